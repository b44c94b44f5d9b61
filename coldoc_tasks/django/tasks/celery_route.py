"""The Celery route of the Django Tasks backend (``OPTIONS = {"SERVER":
"celery"}``, the site's ``COLDOC_TASKS_CELERYCONFIG`` or ``OPTIONS["CELERYCONFIG"]``):
the same specs and runner, run by a Celery worker of the ``celery`` backend
(the generic task of :mod:`coldoc_tasks.celery.worker`), with its records in
the Redis result backend, all expiring with the results (``result_expires``):

==================================  ==============================================
key                                 value
==================================  ==============================================
``coldoc-tasks-django-<id>``        the spec, as :func:`.results.encode_spec` has it
``coldoc-tasks-django-start-<id>``  when the worker started the task (``time.time()``)
==================================  ==============================================

with the records of :mod:`coldoc_tasks.celery.claims` (which worker process
runs it) and Celery's own result (the outcome, ``date_done``).  The Django
queue ``default`` is the celeryconfig's ``task_default_queue``; another name
is a Celery queue of that name, which some worker must consume.
``run_after`` is Celery's ``eta``: the worker that receives the task holds
it until then.  Celery has no priorities that order a queue as Django's do
(over Redis), so this route does not claim ``supports_priority``.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from ...coldoc.records import TaskFacts
from ...exceptions import ColdocTasksUnknownTaskError, ColdocTasksUsageError
from ...outcome import dumps_call, loads_outcome
from ..settings import read_settings
from .results import encode_spec
from .runner import run_task

__all__ = ['CeleryRoute', 'run_on_celery']

_SPEC_PREFIX = 'coldoc-tasks-django-'
_START_PREFIX = 'coldoc-tasks-django-start-'


def run_on_celery(spec: dict[str, Any]) -> Any:
    """:func:`~.runner.run_task`, in a Celery worker: the start is noted first."""
    from celery import current_task

    from ...celery.claims import results_expire_after

    backend = current_task.backend
    backend.client.set(_START_PREFIX + spec['id'], repr(time.time()), ex=results_expire_after(backend))
    return run_task(spec)


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    return value.timestamp()


class CeleryRoute:
    """Tasks run on the Celery workers of the site's celeryconfig."""

    name = 'celery'
    supports_defer = True
    supports_priority = False

    def __init__(self, options: dict[str, Any]):
        self._celeryconfig: str | None = options.get('CELERYCONFIG')

    @property
    def app(self) -> Any:
        from ...celery.app import app_for, resolve_celeryconfig

        return app_for(resolve_celeryconfig(self._celeryconfig or read_settings().celeryconfig))

    def _backend(self) -> Any:
        from ...celery.claims import claims_possible

        backend = self.app.backend
        if not claims_possible(backend):
            raise ColdocTasksUsageError('Django tasks on Celery need a Redis result backend (result_backend = '
                                        '"redis://..." in the celeryconfig): results are read there by id')
        return backend

    def declared_queues(self) -> None:
        return None  # which queues the workers consume is theirs to say

    def submit(self, spec: dict[str, Any]) -> None:
        from ...celery.claims import results_expire_after
        from ...celery.worker import RUN_TASK_NAME

        backend = self._backend()
        task_id = spec['id']
        data = dumps_call(run_on_celery, (spec,), {})
        backend.client.set(_SPEC_PREFIX + task_id, encode_spec({**spec, 'submitted': time.time()}),
                           ex=results_expire_after(backend))
        options: dict[str, Any] = {}
        if spec['queue_name'] != 'default':
            options['queue'] = spec['queue_name']
        if spec['run_after'] is not None:
            options['eta'] = datetime.datetime.fromtimestamp(spec['run_after'], tz=datetime.timezone.utc)
        self.app.send_task(RUN_TASK_NAME, args=(data,), serializer='pickle', shadow=spec['task'], task_id=task_id,
                           argsrepr=f'<{spec["task"]}>', **options)

    def facts(self, result_id: str) -> TaskFacts:
        from celery import states

        from ...celery.claims import records
        from ...celery.progress import read_progress

        backend = self._backend()
        record, started = backend.client.mget([_SPEC_PREFIX + result_id, _START_PREFIX + result_id])
        if record is None:
            raise ColdocTasksUnknownTaskError(f'task {result_id} is unknown to the Celery result backend: it was '
                                              f'never enqueued, or its result expired')
        spec = json.loads(record)
        meta = backend.get_task_meta(result_id, cache=False)
        status = meta.get('status')
        _, claim = records(backend, result_id) or (False, None)
        outcome, lost, finished = None, None, None
        if status == states.SUCCESS and isinstance(meta.get('result'), bytes):
            outcome = meta['result']
            state = 'failed' if loads_outcome(outcome).exception is not None else 'done'
            finished = _timestamp(meta.get('date_done'))
        elif status in states.READY_STATES:
            state = 'cancelled' if started is None else 'terminated'
            lost, finished = f'task {result_id} {state} on Celery: {meta.get("result")!r}', _timestamp(
                meta.get('date_done'))
        elif claim is not None and claim.role == 'terminated':
            state, lost, finished = 'cancelled', f'task {result_id} was cancelled before it ran', time.time()
        elif claim is not None:
            state = 'running'
        else:
            state = 'deferred' if (spec['run_after'] or 0) > time.time() else 'queued'
        progress, _ = read_progress(backend, result_id)
        return TaskFacts(
            task_id=result_id, state=state, queue=spec['queue_name'], function=spec['task'],
            priority=spec['priority'], run_after=spec['run_after'], submitted=spec['submitted'],
            started=None if started is None else float(started), finished=finished,
            worker_pid=claim.pid if claim is not None and claim.role != 'terminated' else None,
            lost_message=lost, progress=progress, record=record, encoded_outcome=outcome)

    def terminate(self, result_id: str) -> None:
        from ...celery.fork import CeleryFork

        fork = CeleryFork(celeryconfig=self._celeryconfig or read_settings().celeryconfig)
        fork.task_id = result_id
        fork.cmd_name = 'a Django task'
        fork.terminate()
