"""The Celery app of the ``celery`` backend: read a celeryconfig, make the
app, and force the settings the backend needs.

A celeryconfig is a Python file of Celery settings; it is run, never written
to.  :func:`app_for` makes one app per celeryconfig and process, and caches it
(re-reading the file when asked to notice changes).  :func:`setup_app` is the
one place where the backend imposes settings on an app, its own or a user's:
pickle serialization for tasks and results, and the generic task registered
under :data:`~coldoc_tasks.celery.worker.RUN_TASK_NAME`.
"""

from __future__ import annotations

import logging
import os
import runpy
import threading
import types
from typing import Any

import celery

from ..exceptions import ColdocTasksBackendUnavailableError, ColdocTasksUsageError
from .worker import RUN_TASK_NAME, run_pickled_call

__all__ = ['ENV_CELERYCONFIG', 'load_celeryconfig', 'make_app', 'setup_app', 'app_for', 'resolve_celeryconfig',
           'forget_connections_after_fork']

logger = logging.getLogger(__name__)

#: Environment variable naming the celeryconfig when none is given.
ENV_CELERYCONFIG = 'COLDOC_TASKS_CELERYCONFIG'

_apps: dict[str, tuple[Any, celery.Celery]] = {}
_apps_lock = threading.Lock()
# What a forked child inherited and must neither use nor let be collected.
_inherited: list = []


def load_celeryconfig(path: str | os.PathLike) -> dict[str, Any]:
    """Read the settings of a celeryconfig file (a Python module, run, never
    written to).  Raise :class:`ColdocTasksBackendUnavailableError` saying
    why it cannot be used."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ColdocTasksBackendUnavailableError(f'the celeryconfig {path} does not exist')
    try:
        namespace = runpy.run_path(path, run_name='celeryconfig')
    except Exception as exc:
        raise ColdocTasksBackendUnavailableError(f'the celeryconfig {path} cannot be loaded: {exc!r}') from exc
    return {key: value for key, value in namespace.items()
            if not key.startswith('_') and not isinstance(value, (types.ModuleType, type, types.FunctionType))}


def make_app(celeryconfig: str | os.PathLike) -> celery.Celery:
    """A new Celery app configured from the file ``celeryconfig``, set up
    for coldoc_tasks by :func:`setup_app`."""
    app = celery.Celery('coldoc_tasks', set_as_current=False)
    app.config_from_object(load_celeryconfig(celeryconfig))
    setup_app(app)
    return app


def setup_app(app: celery.Celery) -> celery.Celery:
    """Make ``app`` able to run coldoc_tasks calls: pickle serialization for
    tasks and results, and the generic task registered.  Use it on an app of
    your own when you start its workers with the ``celery`` command."""
    conf = app.conf
    conf.task_serializer = 'pickle'
    conf.result_serializer = 'pickle'
    conf.accept_content = sorted({*(conf.accept_content or ()), 'pickle'})
    if conf.result_accept_content is not None:
        conf.result_accept_content = sorted({*conf.result_accept_content, 'pickle'})
    if RUN_TASK_NAME not in app.tasks:
        # Acknowledged early and never requeued: a task whose process died is
        # reported as lost (WorkerLostError), not run a second time.
        app.task(name=RUN_TASK_NAME, bind=True, acks_late=False, reject_on_worker_lost=False,
                 ignore_result=False, serializer='pickle')(run_pickled_call)
    return app


def _file_signature(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def app_for(celeryconfig: str | os.PathLike, reload_if_changed: bool = False) -> celery.Celery:
    """The app of this process for ``celeryconfig`` (made once, then cached).
    With ``reload_if_changed``, a file changed since it was read is read again."""
    path = os.path.abspath(os.fspath(celeryconfig))
    with _apps_lock:
        cached = _apps.get(path)
        if cached is not None and not reload_if_changed:
            return cached[1]
        signature = _file_signature(path)
        if signature is None:
            raise ColdocTasksBackendUnavailableError(f'the celeryconfig {path} does not exist')
        if cached is not None and cached[0] == signature:
            return cached[1]
        app = make_app(path)
        _apps[path] = (signature, app)
        if cached is not None:
            logger.info('celeryconfig %s changed: configuration reloaded', path)
        return app


def resolve_celeryconfig(celeryconfig: str | os.PathLike | None) -> str:
    """The absolute path of ``celeryconfig``, or of the one named by
    ``$COLDOC_TASKS_CELERYCONFIG``; :class:`ColdocTasksUsageError` if neither."""
    path = celeryconfig or os.environ.get(ENV_CELERYCONFIG)
    if not path:
        raise ColdocTasksUsageError(f'no celeryconfig given, and {ENV_CELERYCONFIG} is not set in the environment')
    return os.path.abspath(os.fspath(path))


def app_of(celeryconfig: str | os.PathLike | None, app: celery.Celery | None) -> celery.Celery:
    """``app`` set up for coldoc_tasks, or else the app of ``celeryconfig``
    (re-read if changed); :class:`ColdocTasksBackendUnavailableError` if none."""
    if app is not None:
        return setup_app(app)
    try:
        return app_for(resolve_celeryconfig(celeryconfig), reload_if_changed=True)
    except ColdocTasksUsageError as exc:
        raise ColdocTasksBackendUnavailableError(str(exc)) from None


def forget_connections_after_fork(*apps: celery.Celery) -> None:
    """In a child made with ``os.fork()``: make ``apps``, and every app of
    :func:`app_for`, open connections of their own instead of using the
    broker and result backend connections of the parent.

    The inherited connections are kept, never closed nor collected: their
    sockets are the parent's too, and closing one could say goodbye to the
    broker on its behalf.  (Celery does this itself only for the processes
    that billiard starts.)"""
    global _apps_lock
    _apps_lock = threading.Lock()  # maybe held by another thread of the parent
    for app in {id(app): app for app in [*apps, *(app for _, app in _apps.values())]}.values():
        _inherited.append((app._pool, app.__dict__.get('amqp') and app.amqp._producer_pool))
        app._after_fork()
        consumer = getattr(app.backend, 'result_consumer', None)
        if consumer is not None:
            _inherited.append(getattr(consumer, '_pubsub', None))
            consumer._after_fork()
