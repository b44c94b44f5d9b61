"""A task as Django sees it, from what the task server knows of it.

Each enqueued task carries a *spec*, a small JSON object that both ends
read: the task's dotted path, the backend's alias, its queue, priority,
``run_after``, whether it takes a context, when it was enqueued, and its
arguments (JSON, as Django requires).  The runner is called with it where
the task runs; the server keeps it with the task (as the task's record), so
that any process of the site rebuilds the ``TaskResult`` from it and from
the server's facts::

    server state            Django status   errors
    deferred, queued        READY
    running                 RUNNING
    done                    SUCCESSFUL                  return_value: what the task returned
    failed                  FAILED          the task's exception (class path, traceback)
    terminated, cancelled,  FAILED          ColdocTasksProcessLookupError, saying why
    lost
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import socket
import traceback
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from ...exceptions import ColdocTasksProcessLookupError
from .api import Task, TaskError, TaskResult, TaskResultStatus, normalize_json

__all__ = ['SPEC_VERSION', 'TaskFailure', 'class_path', 'require_json', 'make_spec', 'encode_spec', 'decode_spec',
           'task_from_spec', 'worker_id', 'to_datetime', 'from_timestamp', 'result_from_facts']

SPEC_VERSION = 1

_STATUS = {'deferred': TaskResultStatus.READY, 'queued': TaskResultStatus.READY,
           'running': TaskResultStatus.RUNNING, 'done': TaskResultStatus.SUCCESSFUL}


class TaskFailure(Exception):
    """What the runner raises when the task raised: the task's exception as
    Django records it, ``(exception_class_path, traceback)``, which any
    process reads without importing the task's exception class."""


def class_path(cls: type) -> str:
    """``module.QualifiedName`` of ``cls``, as ``TaskError`` names it."""
    return f'{cls.__module__}.{cls.__qualname__}'


def to_datetime(timestamp: float | None) -> datetime.datetime | None:
    """Seconds since the epoch as Django's ``timezone.now()`` would give
    them: aware (UTC) with ``USE_TZ``, else naive in the site's time zone."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment if settings.USE_TZ else timezone.make_naive(moment)


def from_timestamp(moment: datetime.datetime | None) -> float | None:
    """The inverse of :func:`to_datetime` (a naive time is in the site's time zone)."""
    if moment is None:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment.timestamp()


def _json_problem(value: Any, where: str) -> Exception | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return TypeError(f'{where} has the key {key!r}, a {type(key).__name__}: JSON would make it the '
                                 f'string {json.dumps(key)!r}')
            problem = _json_problem(item, f'{where}[{key!r}]')
            if problem is not None:
                return problem
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problem = _json_problem(item, f'{where}[{index}]')
            if problem is not None:
                return problem
    elif isinstance(value, float) and not math.isfinite(value):
        return ValueError(f'{where} is {value!r}, which JSON cannot hold')
    return None


def require_json(value: Any, where: str) -> Any:
    """``value`` as Django normalises it for JSON (``normalize_json``: a
    tuple becomes a list, bytes a str; other types raise ``TypeError``),
    checked to come back from JSON unchanged, as a task's arguments and
    value must: a key that is not a str raises ``TypeError``, a NaN or an
    infinity ``ValueError``, each naming where it is (``where``: the name of
    ``value``, such as ``args``)."""
    value = normalize_json(value)
    problem = _json_problem(value, where)
    if problem is not None:
        raise problem
    return value


def make_spec(result: TaskResult) -> dict[str, Any]:
    """The spec of a task just enqueued as ``result`` (see the module)."""
    task = result.task
    return {'v': SPEC_VERSION, 'id': result.id, 'task': task.module_path, 'backend': result.backend,
            'queue_name': task.queue_name, 'priority': int(task.priority), 'takes_context': task.takes_context,
            'run_after': from_timestamp(task.run_after), 'enqueued_at': from_timestamp(result.enqueued_at),
            'args': result.args, 'kwargs': result.kwargs}


def encode_spec(spec: dict[str, Any]) -> bytes:
    return json.dumps(spec, separators=(',', ':'), allow_nan=False).encode('utf-8')


def decode_spec(data: bytes) -> dict[str, Any]:
    spec = json.loads(data)
    if not isinstance(spec, dict) or spec.get('v') != SPEC_VERSION:
        raise ValueError('the record of this task was not written by the coldoc_tasks Django Tasks backend')
    return spec


def task_from_spec(spec: dict[str, Any]) -> Task:
    """The ``Task`` a spec names, imported, with the spec's queue, priority,
    ``run_after`` and backend."""
    try:
        task = import_string(spec['task'])
    except ImportError as exc:
        raise ImportError(f'the task {spec["task"]} cannot be imported in this process: {exc}') from exc
    if not isinstance(task, Task):
        raise TypeError(f'{spec["task"]} is a {type(task).__name__}, not a task (decorate it with @task)')
    return dataclasses.replace(task, queue_name=spec['queue_name'], priority=spec['priority'],
                               run_after=to_datetime(spec['run_after']), backend=spec['backend'])


def worker_id(pid: int) -> str:
    """The id Django's ``worker_ids`` gives the worker process ``pid`` of this machine."""
    return f'{socket.gethostname()}:{pid}'


def _error_of(facts: Any) -> TaskError:
    outcome = facts.outcome()
    if outcome is None:  # ended without an outcome: terminated, cancelled, lost
        lines = traceback.format_exception_only(ColdocTasksProcessLookupError,
                                                ColdocTasksProcessLookupError(facts.lost_message or facts.state))
        return TaskError(exception_class_path=class_path(ColdocTasksProcessLookupError), traceback=''.join(lines))
    exc = outcome.exception
    if isinstance(exc, TaskFailure) and len(exc.args) == 2:
        return TaskError(exception_class_path=exc.args[0], traceback=exc.args[1])
    # the runner itself failed (its call could not be unpickled, a hook failed, the result was too big)
    name = getattr(exc, 'type_name', None) or class_path(type(exc))
    return TaskError(exception_class_path=name, traceback=''.join(outcome.traceback or ()))


def result_from_facts(facts: Any, spec: dict[str, Any], task: Task) -> TaskResult:
    """The ``TaskResult`` of a task, from the server's ``facts`` (a
    :class:`~coldoc_tasks.coldoc.records.TaskFacts`) and its spec."""
    status = _STATUS.get(facts.state, TaskResultStatus.FAILED)
    errors, value = [], None
    if status == TaskResultStatus.SUCCESSFUL:
        outcome = facts.outcome()
        if outcome.exception is None:
            value = outcome.value
        else:  # the value could not be read here
            status = TaskResultStatus.FAILED
    if status == TaskResultStatus.FAILED:
        errors.append(_error_of(facts))
    started = to_datetime(facts.started)
    result = TaskResult(
        task=task, id=spec['id'], status=status, enqueued_at=to_datetime(spec['enqueued_at']),
        started_at=started, finished_at=to_datetime(facts.finished) if status in (
            TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED) else None,
        last_attempted_at=started, args=spec['args'], kwargs=spec['kwargs'], backend=spec['backend'],
        errors=errors, worker_ids=[worker_id(facts.worker_pid)] if facts.worker_pid else [])
    object.__setattr__(result, '_return_value', value)
    return result
