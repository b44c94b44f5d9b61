"""Scenarios of the Django Tasks backend, each run in a process of the
test's site (``python -m tests.django_tasks_driver SCENARIO [ARG...]``,
with the site's settings): it sets Django up, runs the scenario against the
site's real coldoc server (or Celery worker) and prints what it saw as one
JSON line, which the test checks.  ``$TASKS_BACKEND`` names the backend
alias the tasks use (default: ``default``).  Every wait here is bounded."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time


def alias() -> str:
    return os.environ.get('TASKS_BACKEND', 'default')


def use(task):
    """``task`` on the backend of this run."""
    return task.using(backend=alias())


def start_celery() -> dict:
    """Start the site's Celery worker (its settings' celeryconfig), Django set up in it."""
    from coldoc_tasks.django.autostart import autostart_celery
    from coldoc_tasks.django.settings import read_settings

    return {'pid': autostart_celery(read_settings())}


def wait_finished(result, timeout: float = 60.0, statuses=('SUCCESSFUL', 'FAILED')) -> list[str]:
    """Refresh ``result`` until its status is one of ``statuses`` (within
    ``timeout`` seconds); return the statuses seen on the way."""
    seen = [str(result.status)]
    deadline = time.monotonic() + timeout
    while str(result.status) not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f'task {result.id} still {result.status} after {timeout} s (seen {seen})')
        time.sleep(0.02)
        result.refresh()
        if seen[-1] != str(result.status):
            seen.append(str(result.status))
    return seen


def _times(result) -> dict:
    return {name: None if getattr(result, name) is None else getattr(result, name).timestamp()
            for name in ('enqueued_at', 'started_at', 'finished_at', 'last_attempted_at')}


def _return_value_error(result) -> str:
    """Why ``result.return_value`` raises, or '' if it does not."""
    try:
        _ = result.return_value
    except ValueError as exc:
        return str(exc)
    return ''


def _errors(result) -> list[dict]:
    return [{'path': error.exception_class_path, 'traceback': error.traceback,
             'class': error.exception_class.__name__} for error in result.errors]


def enqueue_and_follow() -> dict:
    from coldoc_tasks.django.tasks.api import task_enqueued
    from tests import django_tasks_jobs as jobs

    enqueued = []
    task_enqueued.connect(lambda sender, task_result, **kw: enqueued.append((sender.__name__, task_result.id)),
                          weak=False)
    started = time.monotonic()
    result = use(jobs.echo).enqueue(1, (2, 3), key=b'bytes')
    enqueue_seconds = time.monotonic() - started
    first = {'status': str(result.status), 'times': _times(result), 'worker_ids': list(result.worker_ids),
             'is_finished': result.is_finished}
    not_ready = _return_value_error(result)
    seen = wait_finished(result)
    again = use(jobs.echo).get_result(result.id)
    return {'first': first, 'not_ready': not_ready, 'enqueue_seconds': enqueue_seconds, 'seen': seen,
            'status': str(result.status), 'value': result.return_value, 'args': result.args,
            'kwargs': result.kwargs, 'times': _times(result), 'worker_ids': result.worker_ids,
            'attempts': result.attempts, 'again': again.return_value, 'again_status': str(again.status),
            'enqueued_signals': enqueued, 'id': result.id, 'backend': result.backend, 'web_pid': os.getpid()}


def errors() -> dict:
    from tests import django_tasks_jobs as jobs

    found = {}
    for name, result in [('custom', use(jobs.fail).enqueue('it went wrong')),
                         ('builtin', use(jobs.fail_builtin).enqueue('bad value')),
                         ('unserialisable', use(jobs.return_unserialisable).enqueue())]:
        wait_finished(result)
        message = _return_value_error(result)
        found[name] = {'status': str(result.status), 'errors': _errors(result), 'return_value_error': message,
                       'times': _times(result)}
    return found


def async_and_context() -> dict:
    from tests import django_tasks_jobs as jobs

    doubled = use(jobs.async_double).enqueue(21)
    context = use(jobs.with_context).enqueue('label')
    wait_finished(doubled)
    wait_finished(context)
    return {'async': [str(doubled.status), doubled.return_value, _errors(doubled)],
            'context': [str(context.status), context.return_value, context.id, _errors(context)],
            'context_worker_ids': context.worker_ids}


def validation() -> dict:
    from django.utils import timezone

    from coldoc_tasks.django.tasks.api import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch, task
    from tests import django_tasks_jobs as jobs

    refused = {}

    def attempt(name, make):
        try:
            make()
        except (InvalidTask, TypeError, ValueError) as exc:
            refused[name] = f'{type(exc).__name__}: {exc}'

    attempt('priority', lambda: use(jobs.add).using(priority=101))
    attempt('priority_5', lambda: use(jobs.add).using(priority=5))
    attempt('naive_run_after', lambda: use(jobs.add).using(run_after=datetime.datetime.now()))
    attempt('queue', lambda: jobs.add.using(queue_name='nowhere'))
    attempt('not_module_level', lambda: task(lambda: None))
    attempt('context_argument', lambda: task(takes_context=True)(jobs.not_a_task))
    attempt('json_args', lambda: use(jobs.add).enqueue(object(), 1))
    found = {'refused': refused}
    try:
        use(jobs.add).get_result('0' * 32)
    except TaskResultDoesNotExist as exc:
        found['unknown'] = f'{type(exc).__name__}: {exc}'
    result = use(jobs.add).enqueue(1, 2)
    wait_finished(result)
    try:
        use(jobs.echo).get_result(result.id)
    except TaskResultMismatch as exc:
        found['mismatch'] = type(exc).__name__
    found['aware_defer_ok'] = str(use(jobs.add).using(run_after=timezone.now()).enqueue(1, 1).status)
    return found


def defer(seconds: str) -> dict:
    from django.utils import timezone

    from tests import django_tasks_jobs as jobs

    run_after = timezone.now() + datetime.timedelta(seconds=float(seconds))
    result = use(jobs.started_at).using(run_after=run_after).enqueue()
    status_after_enqueue = str(result.status)
    wait_finished(result)
    return {'run_after': run_after.timestamp(), 'started': result.return_value, 'status': str(result.status),
            'status_after_enqueue': status_after_enqueue,
            'started_at': result.started_at.timestamp()}


def priority(gate: str) -> dict:
    from tests import django_tasks_jobs as jobs

    blocker = jobs.wait_for_gate.enqueue(gate)
    wait_finished(blocker, statuses=('RUNNING',))
    results = [jobs.note_order.using(priority=p).enqueue(name)
               for name, p in [('first-low', -10), ('second-default', 0), ('third-high', 10), ('fourth-top', 100)]]
    with open(gate, 'w', encoding='utf-8') as stream:
        stream.write('open\n')
    for result in [blocker, *results]:
        wait_finished(result)
    with open(jobs.data_path('order'), encoding='utf-8') as stream:
        return {'order': stream.read().split(), 'blocker': blocker.return_value}


def enqueue_only() -> dict:
    from tests import django_tasks_jobs as jobs

    result = use(jobs.add).enqueue(20, 22)
    wait_finished(result)
    return {'id': result.id, 'pid': os.getpid()}


def read_result(result_id: str) -> dict:
    from coldoc_tasks.django.tasks.api import task_backends

    reads = [task_backends[alias()].get_result(result_id) for _ in range(3)]
    return {'statuses': [str(r.status) for r in reads], 'values': [r.return_value for r in reads],
            'args': reads[0].args, 'task': reads[0].task.module_path, 'pid': os.getpid()}


def terminate(gate: str) -> dict:
    from django.utils import timezone

    from coldoc_tasks.django.tasks.api import task_backends
    from tests import django_tasks_jobs as jobs

    backend = task_backends[alias()]
    deferred = use(jobs.add).using(run_after=timezone.now() + datetime.timedelta(hours=1)).enqueue(1, 2)
    cancelled = backend.terminate(deferred.id)
    read_again = backend.get_result(deferred.id)
    running = jobs.wait_for_gate.using(queue_name='default', backend=alias()).enqueue(gate)
    wait_finished(running, statuses=('RUNNING',))
    backend.terminate(running.id)
    wait_finished(running)
    return {'cancelled': [str(cancelled.status), _errors(cancelled), cancelled.started_at],
            'cancelled_finished_at': [_times(cancelled)['finished_at'], _times(read_again)['finished_at']],
            'terminated': [str(running.status), _errors(running)]}


def progress() -> dict:
    from coldoc_tasks.django.tasks.api import task_backends
    from tests import django_tasks_jobs as jobs

    result = use(jobs.report_progress).enqueue(50)
    wait_finished(result)
    report = task_backends[alias()].get_progress(result.id)
    return {'status': str(result.status), 'progress': None if report is None else list(report)}


def json_contract() -> dict:
    """Arguments and values that JSON cannot hold, or would change."""
    from tests import django_tasks_jobs as jobs

    refused = {}
    for name, args, kwargs in [('int_key', ({1: 'one'},), {}), ('nested_int_key', (), {'deep': [{'x': {2: 0}}]}),
                               ('nan', (1, float('nan')), {})]:
        try:
            result = use(jobs.echo).enqueue(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            refused[name] = f'{type(exc).__name__}: {exc}'
        else:
            refused[name] = f'enqueued as {result.id}'
    found = {'refused': refused}
    for name, job in [('int_keys', jobs.return_int_keys), ('infinity', jobs.return_infinity)]:
        result = use(job).enqueue()
        wait_finished(result)
        found[name] = {'status': str(result.status), 'errors': _errors(result),
                       'return_value_error': _return_value_error(result)}
    return found


def _outcome(call) -> str:
    """What ``call()`` gave: the status and backend of a result, or the exception."""
    try:
        result = call()
    except Exception as exc:
        return f'{type(exc).__name__}: {exc}'
    return f'{result.status} {result.backend}'


def results_of_others() -> dict:
    """Ids of another alias, and of a task of the server that is not Django's."""
    from coldoc_tasks.coldoc.records import describe, submit_kept
    from coldoc_tasks.coldoc.records import terminate as terminate_task
    from coldoc_tasks.django.settings import read_settings
    from coldoc_tasks.django.tasks.api import task_backends
    from tests import django_tasks_jobs as jobs

    default, other = task_backends['default'], task_backends['other']
    on_default = jobs.add.enqueue(1, 2)
    on_other = jobs.add.using(backend='other').enqueue(3, 4)
    wait_finished(on_default)
    wait_finished(on_other)
    infofile = read_settings().infofile
    plain = submit_kept(infofile, time.sleep, (0,), run_after=time.time() + 3600)
    found = {
        'other_reads_default': _outcome(lambda: other.get_result(on_default.id)),
        'default_reads_other': _outcome(lambda: default.get_result(on_other.id)),
        'other_reads_own': _outcome(lambda: other.get_result(on_other.id)),
        'other_value': on_other.return_value,
        'plain_read': _outcome(lambda: default.get_result(plain)),
        'plain_terminate': _outcome(lambda: default.terminate(plain)),
        'plain_state': describe(infofile, plain).state,
        'other_terminates_default': _outcome(lambda: other.terminate(on_default.id)),
        'finished_terminate': _outcome(lambda: default.terminate(on_default.id)),
        'finished_value': default.get_result(on_default.id).return_value,
        'unknown_terminate': _outcome(lambda: default.terminate('0' * 32)),
    }
    terminate_task(infofile, plain)
    return found


def terminate_ended() -> dict:
    """``terminate`` of a finished task, and of an unknown id."""
    from coldoc_tasks.django.tasks.api import task_backends
    from tests import django_tasks_jobs as jobs

    backend = task_backends[alias()]
    finished = use(jobs.add).enqueue(2, 3)
    wait_finished(finished)
    return {'finished': _outcome(lambda: backend.terminate(finished.id)),
            'value': backend.get_result(finished.id).return_value,
            'unknown': _outcome(lambda: backend.terminate('0' * 32))}


def async_api() -> dict:
    """``aenqueue``, ``aget_result`` and ``arefresh``, with a whole float
    priority and a ``run_after`` in the past (both valid for Django)."""
    import asyncio

    from django.utils import timezone

    from tests import django_tasks_jobs as jobs

    async def run() -> dict:
        late = use(jobs.add).using(priority=5.0, run_after=timezone.now() - datetime.timedelta(days=1))
        result = await late.aenqueue(20, 22)
        read = await use(jobs.add).aget_result(result.id)
        deadline = time.monotonic() + 60
        while not result.is_finished:
            if time.monotonic() > deadline:
                raise AssertionError(f'task {result.id} still {result.status} after 60 s')
            await asyncio.sleep(0.02)
            await result.arefresh()
        return {'status': str(result.status), 'value': result.return_value, 'read_id': read.id == result.id,
                'read_priority': read.task.priority, 'attempts': result.attempts}

    return asyncio.run(run())


def main(argv: list[str]) -> int:
    import django

    django.setup()
    found = globals()[argv[0]](*argv[1:])
    print(json.dumps(found))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
