"""A Django Tasks backend on the coldoc task server (or on Celery):
``TASKS = {"default": {"BACKEND": "coldoc_tasks.django.backend.ColdocTasksBackend"}}``.

:mod:`.api` finds Django's task framework (``django.tasks``, or the
``django_tasks`` backport on Django 5.2); :mod:`.runner` runs a task where
it runs and tells Django's signals; :mod:`.results` builds a ``TaskResult``
from what the server knows; :mod:`.routes` hands tasks to the coldoc server
or to Celery; :mod:`coldoc_tasks.django.backend` is the backend itself.
See ``docs/django-tasks.md``.
"""
