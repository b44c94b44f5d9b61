"""What runs where a Django task runs (a worker of the coldoc server, or a
Celery worker; Django is set up there): :func:`run_task` imports the task
its spec names, sends ``task_started``, calls it (an ``async def`` task in an
event loop of its own, with :func:`~coldoc_tasks.aio.run_coroutine`; a task
that takes a context gets a ``TaskContext`` first), and sends
``task_finished``, as Django's own workers do.

It returns the task's value made JSON (as Django requires; a value that
cannot be, or that JSON would change, such as a dict with int keys or an
infinity, fails the task with a ``TypeError`` or ``ValueError`` saying
where the value is wrong), or raises
:class:`~.results.TaskFailure` with the task's exception as Django records
it, so that the server counts the task as failed and any process reads why
without importing the exception's class.
"""

from __future__ import annotations

import inspect
import os
import traceback
from typing import Any

from django.utils import timezone

from ...aio import run_coroutine
from .api import TaskContext, TaskError, TaskResult, TaskResultStatus, task_finished, task_started
from .results import TaskFailure, class_path, require_json, task_from_spec, to_datetime, worker_id

__all__ = ['run_task']


def run_task(spec: dict[str, Any]) -> Any:
    """Run the Django task of ``spec`` (see :mod:`.results`) here."""
    task = task_from_spec(spec)
    sender = type(task.get_backend())
    started = timezone.now()
    result = TaskResult(
        task=task, id=spec['id'], status=TaskResultStatus.RUNNING, enqueued_at=to_datetime(spec['enqueued_at']),
        started_at=started, finished_at=None, last_attempted_at=started, args=spec['args'],
        kwargs=spec['kwargs'], backend=spec['backend'], errors=[], worker_ids=[worker_id(os.getpid())])
    try:
        task_started.send(sender=sender, task_result=result)
        args = (TaskContext(task_result=result), *result.args) if task.takes_context else result.args
        value = task.func(*args, **result.kwargs)
        if inspect.iscoroutine(value):
            value = run_coroutine(value)
        value = require_json(value, 'the return value')
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # every failure of the task is its result
        error = TaskError(exception_class_path=class_path(type(exc)),
                          traceback=''.join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        result.errors.append(error)
        object.__setattr__(result, 'status', TaskResultStatus.FAILED)
        object.__setattr__(result, 'finished_at', timezone.now())
        task_finished.send(sender=sender, task_result=result)
        raise TaskFailure(error.exception_class_path, error.traceback) from None
    object.__setattr__(result, '_return_value', value)
    object.__setattr__(result, 'status', TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, 'finished_at', timezone.now())
    task_finished.send(sender=sender, task_result=result)
    return value
