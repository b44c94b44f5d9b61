"""Asking Celery workers of the ``celery`` backend: :func:`ping`,
:func:`status`, :func:`celery_server_check`, and :func:`stop`, the same as
``coldoc_tasks_cli celery ping|status|stop``.  (Starting them is
:mod:`.daemon`; the self-check, :mod:`.check`.)"""

from __future__ import annotations

import logging
import os
import select
import socket
import time
from typing import Any

import celery

from ..exceptions import ColdocTasksBackendUnavailableError
from .app import app_of

__all__ = ['CHECK_TIMEOUT', 'stop', 'shutdown', 'status', 'ping', 'celery_server_check', 'broker_uri']

logger = logging.getLogger(__name__)

#: Seconds a worker has to answer a ping when checking whether Celery is usable.
CHECK_TIMEOUT = 1.0


def broker_uri(app: celery.Celery) -> str:
    """The URI of ``app``'s broker, without the password."""
    with app.connection_for_write() as conn:
        return conn.as_uri()


def check_broker(app: celery.Celery, timeout: float) -> None:
    with app.connection_for_write(connect_timeout=timeout) as conn:
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        except Exception as exc:
            raise ColdocTasksBackendUnavailableError(
                f'the Celery broker {conn.as_uri()} cannot be reached: {exc}') from exc


def ping(celeryconfig: str | os.PathLike | None = None, timeout: float = 1.0, *, app: celery.Celery | None = None,
         destination: list[str] | None = None, limit: int | None = None) -> list[str]:
    """The names of the workers that answer a ping within ``timeout``
    seconds (all of them, or those in ``destination``; with ``limit``, stop
    at that many).  Raise :class:`ColdocTasksBackendUnavailableError` if the
    broker cannot be reached."""
    app = app_of(celeryconfig, app)
    check_broker(app, timeout)
    if destination is not None and limit is None:
        limit = len(destination)
    try:
        replies = app.control.ping(destination=destination, timeout=timeout, limit=limit) or []
    except Exception as exc:
        raise ColdocTasksBackendUnavailableError(f'cannot ping Celery workers on {broker_uri(app)}: {exc}') from exc
    return sorted(name for reply in replies for name in reply)


def status(celeryconfig: str | os.PathLike | None = None, timeout: float | None = None, *,
           app: celery.Celery | None = None) -> dict[str, Any]:
    """What each worker that answers is doing: ``{name: {'pid', 'concurrency',
    'active', 'reserved', 'registered'}}``; tasks are listed as dicts with
    ``id`` and ``name`` (the callable's name for coldoc_tasks calls).

    Called with the celeryconfig alone, as in coldoc_tasks 0.2, it answers as
    0.2 did: ``{'availability', 'stats', 'registered_tasks', 'active_tasks',
    'scheduled_tasks'}``, each Celery's inspect reply (``{worker name: ...}``,
    or None when no worker answers).  Given ``timeout`` or ``app``, it answers
    as above."""
    if timeout is None and app is None:
        return _status_as_in_0_2(app_of(celeryconfig, None), 1.0)
    app = app_of(celeryconfig, app)
    names = ping(app=app, timeout=timeout)
    if not names:
        return {}
    inspect = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
    stats = inspect.stats() or {}
    active = inspect.active() or {}
    reserved = inspect.reserved() or {}
    registered = inspect.registered() or {}

    def tasks(requests: list[dict]) -> list[dict]:
        return [{'id': r.get('id'), 'name': r.get('name'), 'worker_pid': r.get('worker_pid'),
                 'time_start': r.get('time_start')} for r in requests or ()]

    return {name: {
        'pid': stats.get(name, {}).get('pid'),
        'concurrency': stats.get(name, {}).get('pool', {}).get('max-concurrency'),
        'active': tasks(active.get(name)),
        'reserved': tasks(reserved.get(name)),
        'registered': sorted(registered.get(name) or ()),
    } for name in names}


def _status_as_in_0_2(app: celery.Celery, timeout: float) -> dict[str, Any]:
    names = ping(app=app, timeout=timeout)
    if not names:
        return dict.fromkeys(('availability', 'stats', 'registered_tasks', 'active_tasks', 'scheduled_tasks'))
    inspect = app.control.inspect(destination=names, timeout=timeout, limit=len(names))
    return {'availability': inspect.ping(), 'stats': inspect.stats(), 'registered_tasks': inspect.registered(),
            'active_tasks': inspect.active(), 'scheduled_tasks': inspect.scheduled()}


def celery_server_check(celeryconfig: str | os.PathLike | None = None, timeout: float = 0.1) -> bool:
    """True if a worker answers a ping within ``timeout`` seconds (coldoc_tasks
    0.2's check); False too when the celeryconfig cannot be loaded or its
    broker cannot be reached (:func:`ping` says why instead)."""
    try:
        return bool(ping(celeryconfig, timeout=timeout, limit=1))
    except ColdocTasksBackendUnavailableError as exc:
        logger.debug('no Celery worker: %s', exc)
        return False


















def stop(celeryconfig: str | os.PathLike | None = None, timeout: float = 10.0, *, app: celery.Celery | None = None,
         destination: list[str] | None = None) -> dict[str, int | None]:
    """Ask the workers (all that answer, or those in ``destination``) to
    shut down (running tasks finish first) and wait up to ``timeout`` seconds
    for those on this machine to exit.  Return ``{name: pid}`` of the
    workers told."""
    app = app_of(celeryconfig, app)
    names = destination or ping(app=app, timeout=CHECK_TIMEOUT)
    if not names:
        return {}
    stats = app.control.inspect(destination=names, timeout=CHECK_TIMEOUT, limit=len(names)).stats() or {}
    pids = {name: stats.get(name, {}).get('pid') for name in names}
    app.control.shutdown(destination=names, reply=True, timeout=CHECK_TIMEOUT, limit=len(names))
    deadline = time.monotonic() + timeout
    host = socket.gethostname()
    for name, pid in pids.items():
        if pid and name.endswith('@' + host):
            _wait_pid_gone(pid, max(0.0, deadline - time.monotonic()))
    logger.info('Celery workers told to stop: %s', ', '.join(names))
    return pids


#: coldoc_tasks 0.2's name of :func:`stop`.
shutdown = stop


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
















