"""Django's task framework, wherever this Django has it: ``django.tasks``
(Django 6 and later), else the ``django_tasks`` backport package (Django
5.2; ``pip install django-tasks``).  The rest of the backend imports these
names from here only.

The two spell one exception differently (``InvalidTask``, the backport's
``InvalidTaskError``); both are :data:`InvalidTask` here.
"""

from __future__ import annotations

try:
    from django.tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = 'django.tasks'
except ImportError:
    try:
        from django_tasks import DEFAULT_TASK_QUEUE_NAME, task_backends
    except ImportError as exc:
        raise ImportError(
            'the coldoc_tasks Django Tasks backend needs django.tasks (Django 6 or later) or, on Django 5.2, '
            f'the django-tasks backport package (pip install django-tasks): {exc}') from exc
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import (
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskContext,
        TaskError,
        TaskResult,
        TaskResultStatus,
        task,
    )
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist, TaskResultMismatch
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

    FRAMEWORK = 'django_tasks'


def register_checks() -> None:
    """Have ``manage.py check`` run the checks of the task backends.
    Django registers them when its task framework is first imported, which a
    site may do only after the checks have started (in its URLconf, say):
    this module imports ``django.tasks``; the backport's checks are imported
    here."""
    if FRAMEWORK == 'django_tasks':
        import django_tasks.checks  # noqa: F401

__all__ = ['FRAMEWORK', 'DEFAULT_TASK_QUEUE_NAME', 'BaseTaskBackend', 'Task', 'TaskContext', 'TaskError',
           'TaskResult', 'TaskResultStatus', 'InvalidTask', 'TaskResultDoesNotExist', 'TaskResultMismatch',
           'task', 'TASK_MIN_PRIORITY', 'TASK_MAX_PRIORITY', 'task_backends', 'task_enqueued', 'task_started',
           'task_finished', 'normalize_json', 'register_checks']
