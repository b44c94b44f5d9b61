"""As ColDoc's wsgi.py: this code path may autostart every server the settings list."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'cdsite.settings')
os.environ['COLDOC_TASKS_AUTOSTART'] = 'all'

application = get_wsgi_application()
