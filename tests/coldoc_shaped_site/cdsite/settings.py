"""Settings shaped like ColDoc's (the coldoc_tasks part of them)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
COLDOC_RUN_ROOT = os.environ['CDSITE_RUN_ROOT']

SECRET_KEY = 'coldoc-shaped-test-site'
DEBUG = True
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']

INSTALLED_APPS = [
    'django.contrib.contenttypes',
    'coldoc_tasks',
    'cdapp',
]
MIDDLEWARE = ['django.contrib.sessions.middleware.SessionMiddleware']
SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'
SESSION_SERIALIZER = 'django.contrib.sessions.serializers.JSONSerializer'
ROOT_URLCONF = 'cdsite.urls'
WSGI_APPLICATION = 'cdsite.wsgi.application'
DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3',
                         'NAME': os.path.join(COLDOC_RUN_ROOT, 'db.sqlite3')}}
USE_TZ = True

COLDOC_TASKS_INFOFILE = os.path.join(COLDOC_RUN_ROOT, 'coldoc_tasks-info')
COLDOC_TASKS_PYTHONPATH = BASE_DIR
COLDOC_TASKS_AUTOSTART = 'coldoc'
COLDOC_TASKS_LOGFILE = os.path.join(COLDOC_RUN_ROOT, 'coldoc_tasks.log')

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'handlers': {'console': {'class': 'logging.StreamHandler'}},
    'loggers': {'coldoc_tasks': {'handlers': ['console'], 'level': 'INFO'},
                'cdapp': {'handlers': ['console'], 'level': 'INFO'}},
}
