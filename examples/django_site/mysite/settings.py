"""Settings of the coldoc_tasks example site.

The site keeps its data (database, task server infofile and log) in
``$DJANGO_SITE_DATA_DIR``, by default ``var/`` beside this package.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get('DJANGO_SITE_DATA_DIR') or BASE_DIR / 'var')
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

# An example: a real site reads its secret from somewhere private.
SECRET_KEY = os.environ.get('DJANGO_SECRET_KEY', 'django-insecure-coldoc-tasks-example-site')
DEBUG = os.environ.get('DJANGO_DEBUG', '1') == '1'
ALLOWED_HOSTS = ['127.0.0.1', 'localhost', '[::1]']

INSTALLED_APPS = [
    'django.contrib.contenttypes',
    'django.contrib.staticfiles',
    'coldoc_tasks',
    'reports',
]

MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
]

ROOT_URLCONF = 'mysite.urls'
WSGI_APPLICATION = 'mysite.wsgi.application'

TEMPLATES = [
    {
        'BACKEND': 'django.template.backends.django.DjangoTemplates',
        'DIRS': [],
        'APP_DIRS': True,
        'OPTIONS': {'context_processors': ['django.template.context_processors.request']},
    },
]

DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': DATA_DIR / 'db.sqlite3',
        # the web processes and the task workers write at the same time
        'OPTIONS': {'timeout': 20},
    },
}

DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'
USE_TZ = True
TIME_ZONE = 'UTC'
STATIC_URL = 'static/'

# -- coldoc_tasks ---------------------------------------------------------------------
# Where clients find the task server; without it, a private temporary file.
COLDOC_TASKS_INFOFILE = DATA_DIR / 'tasks.info'
# The log of the autostarted server.
COLDOC_TASKS_LOGFILE = DATA_DIR / 'tasks.log'
# The server imports the tasks (reports.tasks) from here.
COLDOC_TASKS_PYTHONPATH = BASE_DIR
# Agree to autostart the coldoc server; wsgi.py and "manage.py runserver" allow it
# through $COLDOC_TASKS_AUTOSTART_OPTIONS.  Add celery (and set
# COLDOC_TASKS_CELERYCONFIG = '/path/to/celeryconfig.py') to use Celery.
COLDOC_TASKS_AUTOSTART = 'coldoc'
# Unset: the socket goes to a private temporary directory, the password is random.
# COLDOC_TASKS_SOCKET = DATA_DIR / 'tasks.socket'
# COLDOC_TASKS_PASSWORD = '...'

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'console': {'class': 'logging.StreamHandler'}},
    'loggers': {'coldoc_tasks': {'handlers': ['console'], 'level': 'INFO'}},
}
