"""WSGI entry point of the example site (gunicorn mysite.wsgi, mod_wsgi, ...)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')
# This code path serves the site: it may autostart the task servers that the
# settings list (COLDOC_TASKS_AUTOSTART).
os.environ['COLDOC_TASKS_AUTOSTART_OPTIONS'] = 'autostart'

application = get_wsgi_application()
