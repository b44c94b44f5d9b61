"""Django tasks for the tests of the Django Tasks backend: imported only
where Django is set up (the test's driver process and the task server's
workers), never by pytest itself.

Every task that leaves a trace writes it under the site's data directory
(``DJANGO_SITE_DATA_DIR``, the test's own), so that the test reads it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from django.conf import settings

import coldoc_tasks
from coldoc_tasks.django.tasks.api import task, task_finished, task_started


def data_path(name: str) -> str:
    return os.path.join(str(settings.DATA_DIR), name)


def _note(kind: str, task_result) -> None:
    with open(data_path('signals.log'), 'a', encoding='utf-8') as stream:
        stream.write(json.dumps({'signal': kind, 'id': task_result.id, 'status': str(task_result.status),
                                 'pid': os.getpid()}) + '\n')


def _on_started(sender, task_result, **kwargs) -> None:
    _note('started', task_result)


def _on_finished(sender, task_result, **kwargs) -> None:
    _note('finished', task_result)


task_started.connect(_on_started, dispatch_uid='coldoc_tasks-tests-started')
task_finished.connect(_on_finished, dispatch_uid='coldoc_tasks-tests-finished')


@task
def add(a, b):
    return a + b


@task
def echo(*args, **kwargs):
    return {'args': args, 'kwargs': kwargs, 'pid': os.getpid()}


class CustomError(Exception):
    pass


@task
def fail(message):
    raise CustomError(message)


@task
def fail_builtin(message):
    raise ValueError(message)


@task
def return_unserialisable():
    return object()


@task
def return_int_keys():
    """A dict JSON would change: its keys would become strings."""
    return {1: 'one'}


@task
def return_infinity():
    return float('inf')


@task
async def async_double(x):
    await asyncio.sleep(0)
    return {'value': 2 * x, 'in_loop': asyncio.get_running_loop().is_running()}


@task(takes_context=True)
def with_context(context, label):
    return {'id': context.task_result.id, 'attempt': context.attempt, 'status': str(context.task_result.status),
            'label': label, 'worker_ids': context.task_result.worker_ids}


@task
def started_at():
    """The time this task started, by its own clock."""
    return time.time()


@task(queue_name='solo')
def wait_for_gate(gate):
    with open(gate, encoding='utf-8') as stream:
        return stream.readline().strip()


@task(queue_name='solo')
def note_order(name):
    with open(data_path('order'), 'a', encoding='utf-8') as stream:
        stream.write(name + '\n')
    return name


@task
def report_progress(total):
    for done in range(1, total + 1):
        coldoc_tasks.progress(done, total, 'counting', stage='count')
    return total


def not_a_task():
    return None
