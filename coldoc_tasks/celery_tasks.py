"""The ``celery`` backend: tasks run on Celery workers, through a real broker.

Every call travels as one generic Celery task, :data:`RUN_TASK_NAME`, whose
only argument is the pickled call and whose result is the pickled outcome::

    client                                  broker           worker pool process
    run(cmd, *args)
      dumps_call -> bytes --send_task----->  queue  -------> run_pickled_call(bytes)
                                                               claim the task id
                                                               call_capturing(cmd, ...)
    wait()                                                     dumps_outcome -> bytes
      AsyncResult.get <---- result backend (Redis) <---------/
      loads_outcome: the value, or the exception with its remote traceback

So any picklable callable runs, and a failure arrives with its type, args and
traceback as on every other backend.  The app uses pickle serialization: the
broker and the result backend must be trusted, as anybody who can write to
them can run code on the workers.

The *claim* (a Redis ``SET NX`` on the result backend) decides, once and for
all, who runs a task: the worker that received it, the task that waits for it
(see below), or ``terminate()`` when it comes first.  Whoever loses does not
run it.  A backend other than Redis has no claim: then a waiting task does not
run its subtask itself, and only Celery's ``revoke`` stops queued tasks.

Nested tasks: a task that waits, with no timeout, for a subtask that no worker
has started yet runs that subtask itself, in its own process.  A waiting task
therefore never sits on a pool slot while the work it waits for sits in the
queue behind it, and a chain of nested tasks completes however small the pool
is.  (Celery's own advice is never to wait inside a task; this is why waiting
is safe here, and ``get`` is called with ``disable_sync_subtasks=False``.)

Lost processes: the generic task is acknowledged early and never requeued,
so a pool process that dies (SIGKILL, a crash, ``os._exit``) makes Celery store
a ``WorkerLostError`` naming the signal or exit code; ``wait`` raises it as
:class:`ColdocTasksProcessLookupError`.  ``terminate`` uses a control command
of this module, run by the worker: it revokes the task, sends SIGTERM to the
process group of the pool process running it (each pool process leads a group
of its own, so what the task forked goes too) and SIGKILL after a grace period.

The second half of the module controls workers: :func:`start` (foreground),
:func:`daemon`, :func:`stop`, :func:`status`, :func:`ping`, :func:`autostart`
and :func:`test`.  The celeryconfig file is only ever read.
"""

from __future__ import annotations

import contextlib
import copyreg
import datetime
import fcntl
import hashlib
import logging
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
from collections.abc import Callable
from typing import Any, ClassVar

import celery
import celery.exceptions
import celery.signals
import kombu.exceptions
from celery import states
from celery.backends.asynchronous import Drainer
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool as PreforkTaskPool
from celery.worker.control import control_command

try:
    from celery.backends.redis import RedisBackend
except ImportError:  # no redis client installed: no claims
    RedisBackend = None

try:
    from billiard.common import terminate_handler_fired as _terminate_handler_fired
except ImportError:  # an older billiard: no way to tell, so every failure is the task's own
    def _terminate_handler_fired() -> bool:
        return False

from .base import ForkBase
from .exceptions import (
    ColdocTasksBackendUnavailableError,
    ColdocTasksConnectionError,
    ColdocTasksProcessLookupError,
    ColdocTasksSerializationError,
    ColdocTasksTimeoutError,
    ColdocTasksUsageError,
)
from .outcome import Outcome, call_capturing, dumps_call, dumps_outcome, loads_call, loads_outcome

__all__ = [
    'CeleryFork', 'CeleryTaskPool', 'CeleryTimeoutError', 'RUN_TASK_NAME', 'ENV_CELERYCONFIG',
    'fork_class', 'fork_class_for', 'get_fork_class', 'load_celeryconfig', 'make_app', 'setup_app', 'app_for',
    'start', 'daemon', 'stop', 'status', 'ping', 'autostart', 'test',
]

logger = logging.getLogger(__name__)

#: The name of the one Celery task that runs every call.
RUN_TASK_NAME = 'coldoc_tasks.run_pickled_call'
#: The worker control command that terminates a task (see :func:`coldoc_tasks_terminate`).
TERMINATE_COMMAND = 'coldoc_tasks_terminate'
#: Environment variable naming the celeryconfig when none is given.
ENV_CELERYCONFIG = 'COLDOC_TASKS_CELERYCONFIG'
#: Set by :func:`daemon` for the worker it starts: a pipe to write to once ready.
_ENV_READY_FD = 'COLDOC_TASKS_CELERY_READY_FD'
_CLAIM_PREFIX = 'coldoc-tasks-claim-'
#: Seconds a worker has to answer a ping when checking whether Celery is usable.
CHECK_TIMEOUT = 1.0


class CeleryTimeoutError(ColdocTasksTimeoutError, celery.exceptions.TimeoutError):
    """``wait`` gave up after its timeout; also a Celery ``TimeoutError``, so
    code written for Celery's ``AsyncResult.get`` keeps catching it."""


# -- the app ----------------------------------------------------------------------

_apps: dict[str, tuple[Any, celery.Celery]] = {}
_apps_lock = threading.Lock()


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


def _resolve_celeryconfig(celeryconfig: str | os.PathLike | None) -> str:
    path = celeryconfig or os.environ.get(ENV_CELERYCONFIG)
    if not path:
        raise ColdocTasksUsageError(f'no celeryconfig given, and {ENV_CELERYCONFIG} is not set in the environment')
    return os.path.abspath(os.fspath(path))


# -- the worker side ----------------------------------------------------------------

# True in a process that runs tasks for a worker (and in what it forks): a wait
# there holds a pool slot, so it may run a subtask that nobody started.
_in_worker_slot = False
_ready_fd: int | None = None


def _become_group_leader() -> None:
    # So that terminate() can signal the task and all it started, never the
    # worker's main process.
    try:
        if os.getpgid(0) != os.getpid():
            os.setpgid(0, 0)
    except OSError:
        logger.warning('cannot give pool process %s a process group of its own', os.getpid())


@celery.signals.worker_process_init.connect(weak=False)
def _on_worker_process_init(**kwargs: Any) -> None:
    global _in_worker_slot, _ready_fd
    _in_worker_slot = True
    _become_group_leader()
    if _ready_fd is not None:
        with contextlib.suppress(OSError):
            os.close(_ready_fd)
        _ready_fd = None


@celery.signals.worker_ready.connect(weak=False)
def _on_worker_ready(**kwargs: Any) -> None:
    global _ready_fd
    if _ready_fd is not None:
        try:
            os.write(_ready_fd, b'1')
            os.close(_ready_fd)
        except OSError:
            logger.warning('cannot tell the process that started this worker that it is ready')
        _ready_fd = None


def _claim(backend: Any, task_id: str, owner: str) -> bool | None:
    """Claim the right to run task ``task_id``: True if won, False if
    somebody else holds it, None if the result backend cannot make claims."""
    if RedisBackend is None or not isinstance(backend, RedisBackend):
        return None
    client = backend.client
    expires = backend.app.conf.result_expires
    if isinstance(expires, datetime.timedelta):
        expires = expires.total_seconds()
    return bool(client.set(_CLAIM_PREFIX + task_id, owner, nx=True, ex=int(expires or 86400)))


def _execute(data: bytes) -> bytes:
    """Run a pickled call; return its pickled outcome.  Never raises for the
    call's sake."""
    try:
        cmd, args, kwargs = loads_call(data)
    except Exception as exc:
        error = ColdocTasksSerializationError(f'the task cannot be unpickled in worker process {os.getpid()}: {exc!r}')
        return dumps_outcome(Outcome(exception=error, traceback=traceback.format_exception(exc)))
    outcome = call_capturing(cmd, args, kwargs)
    if outcome.exception is not None and _terminate_handler_fired():
        # The pool process was told to exit (terminate()): billiard's SIGTERM
        # handler raised this, not the task.  Let billiard see it, so the task
        # is reported as terminated instead of as having raised SystemExit.
        raise outcome.exception
    return dumps_outcome(outcome)


def run_pickled_call(task: celery.Task, data: bytes) -> bytes:
    """The body of the generic Celery task :data:`RUN_TASK_NAME`."""
    global _in_worker_slot
    _in_worker_slot = True
    task_id = task.request.id
    if _claim(task.backend, task_id, f'worker {task.request.hostname} pid {os.getpid()}') is False:
        logger.info('task %s was run or terminated elsewhere: not running it', task_id)
        raise celery.exceptions.Ignore()
    return _execute(data)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@control_command(name=TERMINATE_COMMAND, args=[('task_id', str), ('grace', float)], signature='<task_id> [grace]')
def coldoc_tasks_terminate(state: Any, task_id: str, grace: float = 2.0, **kwargs: Any) -> dict:
    """Terminate a coldoc_tasks task: SIGTERM to its process group, SIGKILL after grace."""
    from celery.worker import state as worker_state

    worker_state.revoked.add(task_id)
    for request in list(worker_state.active_requests):
        pid = request.worker_pid
        if request.id != task_id or not pid or pid == os.getpid():
            # (a task run by the worker's main process, as in the solo pool, is not killed)
            continue
        own_group = _process_group(pid) == pid
        request.terminate(state.consumer.pool, signal=signal.SIGTERM)  # also stores REVOKED
        if own_group:
            _signal_group(pid, signal.SIGTERM)
        logger.info('task %s: SIGTERM sent to its process %s', task_id, pid)
        timer = threading.Timer(grace, _finish_termination, (request, pid, own_group))
        timer.daemon = True
        timer.start()
        return {'ok': f'terminating task {task_id} (process {pid})'}
    return {'ok': f'task {task_id} revoked (not running here)'}


def _process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _finish_termination(request: Any, pid: int, own_group: bool) -> None:
    # Celery forgets the request once it is revoked, but billiard keeps the job
    # until its process sends a result or dies: if the job is still pending on
    # the same process, the task ignored SIGTERM.  (A process that finished the
    # job may already run another task, and must then be left alone.)
    job = request._apply_result() if request._apply_result is not None else None
    if job is not None and not job.ready() and job.worker_pids() == [pid]:
        logger.info('task %s: process %s ignored SIGTERM, sending SIGKILL', request.id, pid)
        if own_group:
            _signal_group(pid, signal.SIGKILL)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    elif own_group and _process_group(pid) is None:
        # the pool process is gone; whatever it started and left in its group goes too
        _signal_group(pid, signal.SIGKILL)


class _AsynPool(AsynPool):
    def _event_process_exit(self, hub: Any, proc: Any) -> None:
        # A process's sentinel pipe becomes readable when it closes its files,
        # a moment before it can be reaped; billiard then finds it still alive
        # and stops watching it, noticing the death only at its next 5-second
        # check.  Reaping it first makes a lost task known at once.
        popen = getattr(proc, '_popen', None)
        if popen is not None:
            with contextlib.suppress(Exception):
                popen.wait(1.0)
        super()._event_process_exit(hub, proc)


class CeleryTaskPool(PreforkTaskPool):
    """Celery's prefork pool, noticing at once a pool process that died.
    Workers started by :func:`start` use it; for a worker of your own, set
    ``worker_pool = 'coldoc_tasks.celery_tasks:CeleryTaskPool'``."""

    Pool = _AsynPool


class _DeadlineDrainer(Drainer):
    """Celery's result drainer, but waking up at the caller's deadline: the
    default one waits in steps of one second, so ``wait(timeout=0.2)`` would
    give up only after a second."""

    def drain_events_until(self, p: Any, timeout: float | None = None, interval: float = 1, on_interval: Any = None,
                           wait: Any = None) -> Any:
        wait = wait or self.result_consumer.drain_events
        deadline = None if timeout is None else time.monotonic() + timeout
        while not p.ready:
            step = interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                step = min(interval, remaining)
            try:
                yield self.wait_for(p, wait, timeout=step)
            except TimeoutError:
                pass
            if on_interval:
                on_interval()


def _precise_timeouts(backend: Any) -> None:
    consumer = getattr(backend, 'result_consumer', None)
    if consumer is not None and type(getattr(consumer, 'drainer', None)) is Drainer:
        consumer.drainer = _DeadlineDrainer(consumer)


# -- the fork class ---------------------------------------------------------------------


class CeleryFork(ForkBase):
    """Run each task on a Celery worker.

    The full contract of :class:`~coldoc_tasks.base.ForkBase`.  Besides its
    arguments: ``celeryconfig``, the path of a celeryconfig file (default: the
    class's own, for a class from :func:`fork_class_for`, else the
    environment variable ``COLDOC_TASKS_CELERYCONFIG``), or ``app``, a Celery
    app (set up with :func:`setup_app`).  ``queue`` names the Celery queue.

    ``task_id`` is Celery's task id.  A pickled copy can ``wait`` in any
    process that reaches the same broker and result backend.
    """

    fork_type = 'celery'
    #: The celeryconfig of a class bound to one by :func:`fork_class_for`.
    celeryconfig: ClassVar[str | None] = None

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None,
                 celeryconfig: str | os.PathLike | None = None, app: celery.Celery | None = None):
        super().__init__(use_fork=use_fork, timeout=timeout, queue=queue)
        self._given_app = app
        self._celeryconfig = None if app is not None else _resolve_celeryconfig(celeryconfig or self.celeryconfig)
        if app is not None:
            setup_app(app)
        elif use_fork:
            app_for(self._celeryconfig)  # a bad celeryconfig is reported here, not at run()
        self._call_data: bytes | None = None
        self._run_here_lock = threading.Lock()

    @property
    def app(self) -> celery.Celery:
        """The Celery app this fork object uses."""
        if self._given_app is not None:
            return self._given_app
        return app_for(self._celeryconfig)

    def _submit(self, cmd: Callable, args: tuple, kwargs: dict) -> str:
        data = dumps_call(cmd, args, kwargs)
        options: dict[str, Any] = {}
        if self.queue not in (None, True, False, ''):
            options['queue'] = str(self.queue)
        app = self.app
        try:
            result = app.send_task(RUN_TASK_NAME, args=(data,), serializer='pickle', shadow=self.cmd_name,
                                   argsrepr=f'<pickled call of {len(data)} bytes>', **options)
        except kombu.exceptions.OperationalError as exc:
            raise ColdocTasksConnectionError(f'cannot send task {self.cmd_name} to the Celery broker: {exc}') from exc
        self._call_data = data
        logger.debug('task %s (%s) sent to Celery', result.id, self.cmd_name)
        return result.id

    def _collect(self, timeout: float | None) -> Outcome:
        if timeout is None and _in_worker_slot and self._call_data is not None:
            outcome = self._run_here_if_unclaimed()
            if outcome is not None:
                return outcome
        app = self.app
        _precise_timeouts(app.backend)
        result = app.AsyncResult(self.task_id)  # made here: Celery's backends are per thread
        try:
            result.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
        except celery.exceptions.TimeoutError:
            raise self._timeout_error(timeout) from None
        return self._outcome_of(result.state, result.result, result.traceback)

    def _run_here_if_unclaimed(self) -> Outcome | None:
        with self._run_here_lock:
            data, self._call_data = self._call_data, None
            if data is None:
                return None
            backend = self.app.backend
            if not _claim(backend, self.task_id, f'waiting task, pid {os.getpid()}'):
                return None
            logger.debug('task %s (%s) not started yet: run by its waiting task', self.task_id, self.cmd_name)
            backend.store_result(self.task_id, None, states.STARTED)  # so that a revoke does not overwrite it
            try:
                payload = _execute(data)
            except BaseException as exc:
                # this process is being stopped: tell whoever else waits for the subtask
                lost = celery.exceptions.WorkerLostError(f'the process {os.getpid()} running it was stopped: {exc!r}')
                backend.mark_as_failure(self.task_id, lost)
                raise
            backend.store_result(self.task_id, payload, states.SUCCESS)
            return loads_outcome(payload)

    def _outcome_of(self, state: str, value: Any, remote_traceback: str | None) -> Outcome:
        what = f'task {self.task_id} ({self.cmd_name})'
        if state == states.SUCCESS:
            return loads_outcome(value) if isinstance(value, bytes) else Outcome(value=value)
        if state == states.REVOKED:
            reason = str(value) or 'revoked'
            return Outcome(exception=ColdocTasksProcessLookupError(f'{what} was terminated (Celery: {reason})'))
        if state == states.FAILURE:
            if isinstance(value, celery.exceptions.WorkerLostError):
                return Outcome(exception=ColdocTasksProcessLookupError(
                    f'{what}: the Celery worker process running it was lost: {value}'))
            if isinstance(value, celery.exceptions.TimeLimitExceeded):
                return Outcome(exception=ColdocTasksProcessLookupError(
                    f'{what} was killed by Celery: time limit exceeded ({value})'))
            lines = remote_traceback.splitlines(keepends=True) if remote_traceback else None
            return Outcome(exception=value, traceback=lines)
        return Outcome(exception=ColdocTasksProcessLookupError(f'{what} ended in the unexpected Celery state {state}'))

    def _terminate(self) -> None:
        app = self.app
        claimed = _claim(app.backend, self.task_id, 'terminated before it started')
        if claimed:
            app.backend.mark_as_revoked(self.task_id, reason='terminated before it started')
            logger.info('task %s (%s) terminated before it started', self.task_id, self.cmd_name)
            return
        if claimed is None:
            app.control.revoke(self.task_id)
        app.control.broadcast(TERMINATE_COMMAND, arguments={'task_id': self.task_id, 'grace': self.terminate_grace})
        logger.info('task %s (%s): termination requested', self.task_id, self.cmd_name)

    def _timeout_error(self, timeout: float | None) -> ColdocTasksTimeoutError:
        return CeleryTimeoutError(f'task {self.task_id} ({self.cmd_name}) did not finish within {timeout} s')

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state['_call_data'] = None
        del state['_run_here_lock']
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._run_here_lock = threading.Lock()


class _BoundForkMeta(type):
    """Metaclass of the fork classes bound to one celeryconfig, so that pickle
    sends such a class as the path of its celeryconfig (see copyreg below)."""


_bound_classes: dict[str, type[CeleryFork]] = {}


def fork_class_for(celeryconfig: str | os.PathLike) -> type[CeleryFork]:
    """A subclass of :class:`CeleryFork` whose instances use ``celeryconfig``:
    ready to use with no arguments, and picklable (as the path)."""
    path = os.path.abspath(os.fspath(celeryconfig))
    with _apps_lock:
        cls = _bound_classes.get(path)
        if cls is None:
            cls = _BoundForkMeta('CeleryFork', (CeleryFork,), {
                '__module__': __name__, '__qualname__': 'CeleryFork', 'celeryconfig': path,
                '__doc__': f'{CeleryFork.__doc__}\n    Bound to the celeryconfig {path}.\n'})
            _bound_classes[path] = cls
    return cls


copyreg.pickle(_BoundForkMeta, lambda cls: (fork_class_for, (cls.celeryconfig,)))

fork_class = CeleryFork


def get_fork_class(infofile: object = None, celeryconfig: str | os.PathLike | None = None) -> type[CeleryFork]:
    """The ``celery`` fork class for ``celeryconfig`` (default: the
    environment variable ``COLDOC_TASKS_CELERYCONFIG``), if its broker can be
    reached and a worker answers a ping; else raise
    :class:`ColdocTasksBackendUnavailableError` saying why.  Takes about
    :data:`CHECK_TIMEOUT` seconds at most."""
    try:
        path = _resolve_celeryconfig(celeryconfig)
    except ColdocTasksUsageError as exc:
        raise ColdocTasksBackendUnavailableError(str(exc)) from None
    app = app_for(path, reload_if_changed=True)
    if not ping(app=app, timeout=CHECK_TIMEOUT, limit=1):
        raise ColdocTasksBackendUnavailableError(
            f'no Celery worker answers a ping within {CHECK_TIMEOUT} s on {_broker_uri(app)}')
    return fork_class_for(path)


# -- worker control --------------------------------------------------------------------


def _broker_uri(app: celery.Celery) -> str:
    with app.connection_for_write() as conn:
        return conn.as_uri()  # without the password


def _app_of(celeryconfig: str | os.PathLike | None, app: celery.Celery | None) -> celery.Celery:
    if app is not None:
        return setup_app(app)
    try:
        return app_for(_resolve_celeryconfig(celeryconfig), reload_if_changed=True)
    except ColdocTasksUsageError as exc:
        raise ColdocTasksBackendUnavailableError(str(exc)) from None


def _check_broker(app: celery.Celery, timeout: float) -> None:
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
    app = _app_of(celeryconfig, app)
    _check_broker(app, timeout)
    if destination is not None and limit is None:
        limit = len(destination)
    try:
        replies = app.control.ping(destination=destination, timeout=timeout, limit=limit) or []
    except Exception as exc:
        raise ColdocTasksBackendUnavailableError(f'cannot ping Celery workers on {_broker_uri(app)}: {exc}') from exc
    return sorted(name for reply in replies for name in reply)


def status(celeryconfig: str | os.PathLike | None = None, timeout: float = 1.0, *,
           app: celery.Celery | None = None) -> dict[str, dict[str, Any]]:
    """What each worker that answers is doing: ``{name: {'pid', 'concurrency',
    'active', 'reserved', 'registered'}}``; tasks are listed as dicts with
    ``id`` and ``name`` (the callable's name for coldoc_tasks calls)."""
    app = _app_of(celeryconfig, app)
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


def start(celeryconfig: str | os.PathLike, *, concurrency: int | None = None, queues: list[str] | None = None,
          hostname: str | None = None, loglevel: str = 'INFO', logfile: str | os.PathLike | None = None,
          extra_args: list[str] | None = None) -> None:
    """Run a Celery worker for ``celeryconfig`` in this process, in the
    foreground, until it is stopped.  ``queues`` default to the app's
    default queue; ``hostname`` to ``coldoc_tasks.PID@HOST``."""
    global _ready_fd
    app = app_for(celeryconfig)
    ready = os.environ.pop(_ENV_READY_FD, None)
    if ready:
        _ready_fd = int(ready)
    argv = ['worker', '--loglevel', loglevel,
            '--hostname', hostname or f'coldoc_tasks.{os.getpid()}@{socket.gethostname()}']
    if concurrency:
        argv += ['--concurrency', str(concurrency)]
    if queues:
        argv += ['--queues', ','.join(queues)]
    if logfile:
        argv += ['--logfile', os.fspath(logfile)]
    if app.conf.worker_pool == 'prefork':
        app.conf.worker_pool = f'{__name__}:CeleryTaskPool'
    app.worker_main(argv + list(extra_args or ()))


def daemon(celeryconfig: str | os.PathLike, logfile: str | os.PathLike | None = None, *, timeout: float = 60.0,
           concurrency: int | None = None, queues: list[str] | None = None, hostname: str | None = None,
           loglevel: str = 'INFO', env: dict[str, str] | None = None) -> int:
    """Start a Celery worker for ``celeryconfig`` in the background and
    return its pid once it answers a ping.  Its output goes to ``logfile``
    (appended), or nowhere.  Raise :class:`ColdocTasksBackendUnavailableError`
    if it does not come up within ``timeout`` seconds (it is then stopped)."""
    path = _resolve_celeryconfig(celeryconfig)
    app = app_for(path, reload_if_changed=True)
    _check_broker(app, CHECK_TIMEOUT)
    hostname = hostname or f'coldoc_tasks.{os.getpid()}.{os.urandom(3).hex()}@{socket.gethostname()}'
    command = [sys.executable, '-m', 'coldoc_tasks.cli', 'celery', 'start', path, '--hostname', hostname,
               '--loglevel', loglevel]
    if concurrency:
        command += ['--concurrency', str(concurrency)]
    for queue in queues or ():
        command += ['--queue', queue]
    read_fd, write_fd = os.pipe()
    environment = dict(os.environ if env is None else env)
    environment[_ENV_READY_FD] = str(write_fd)
    output = open(logfile, 'ab') if logfile else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   env=environment, pass_fds=(write_fd,), start_new_session=True)
    finally:
        os.close(write_fd)
        if logfile:
            output.close()
    try:
        ready = _wait_ready(read_fd, process, timeout)
    finally:
        os.close(read_fd)
    where = f'; see its log {logfile}' if logfile else '; give a log file to see why'
    if ready and _answers(app, hostname, timeout):
        logger.info('Celery worker %s started (pid %s)', hostname, process.pid)
        return process.pid
    code = process.poll()
    if code is None:
        _stop_process(process)
        raise ColdocTasksBackendUnavailableError(f'the Celery worker did not answer within {timeout} s{where}')
    raise ColdocTasksBackendUnavailableError(f'the Celery worker exited with code {code} before it was ready{where}')


def _answers(app: celery.Celery, hostname: str, timeout: float) -> bool:
    """True once worker ``hostname`` answers a ping, within ``timeout``."""
    # A worker says it is ready a moment before it listens to broadcasts (with
    # Redis, a publish/subscribe channel that keeps nothing for late comers),
    # so a first ping may be lost: ping again, briefly each time.
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if ping(app=app, timeout=min(0.5, remaining), destination=[hostname]):
            return True


def _wait_ready(read_fd: int, process: subprocess.Popen, timeout: float) -> bool:
    """Block until the worker writes to the pipe (True), or exits, or
    ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    pidfd = os.pidfd_open(process.pid) if hasattr(os, 'pidfd_open') else None
    try:
        watched = [read_fd] + ([pidfd] if pidfd is not None else [])
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select(watched, [], [], remaining)
            if read_fd in readable and os.read(read_fd, 1) == b'1':
                return True
            if readable:
                # The worker is exiting: it closes its end of the pipe a moment
                # before it can be reaped, and daemon() wants its exit code.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.0, deadline - time.monotonic()))
                return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop(celeryconfig: str | os.PathLike | None = None, timeout: float = 10.0, *, app: celery.Celery | None = None,
         destination: list[str] | None = None) -> dict[str, int | None]:
    """Ask the workers (all that answer, or those in ``destination``) to
    shut down (running tasks finish first) and wait up to ``timeout`` seconds
    for those on this machine to exit.  Return ``{name: pid}`` of the
    workers told."""
    app = _app_of(celeryconfig, app)
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


def _wait_pid_gone(pid: int, timeout: float) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def _autostart_lock(path: str):
    # One lock per celeryconfig, so that processes autostarting at once start one worker.
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    lock_path = os.path.join(tempfile.gettempdir(), f'coldoc_tasks-celery-{os.getuid()}-{digest}.lock')
    with open(lock_path, 'a') as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def autostart(celeryconfig: str | os.PathLike, logfile: str | os.PathLike | None = None, *,
              timeout: float = 60.0, **daemon_options: Any) -> int | None:
    """Start a worker with :func:`daemon` unless one already answers a ping.
    Return the pid of the worker started, or None if none was needed."""
    path = _resolve_celeryconfig(celeryconfig)
    with _autostart_lock(path):
        running = ping(path, timeout=CHECK_TIMEOUT, limit=1)
        if running:
            logger.debug('Celery worker %s already answers: not starting one', running[0])
            return None
        return daemon(path, logfile, timeout=timeout, **daemon_options)


def test(celeryconfig: str | os.PathLike | None = None, timeout: float = 30.0, *,
         app: celery.Celery | None = None) -> float:
    """Run a trivial task and one that raises, on the workers; return the
    round-trip time of the first in seconds.  Raise what went wrong."""
    if app is None:
        f = CeleryFork(celeryconfig=_resolve_celeryconfig(celeryconfig))
        g = CeleryFork(celeryconfig=f._celeryconfig)
    else:
        f, g = CeleryFork(app=app), CeleryFork(app=app)
    started = time.monotonic()
    f.run(pow, 2, 10)
    if f.wait(timeout=timeout) != 1024:
        raise ColdocTasksUsageError('the test task returned a wrong value')
    elapsed = time.monotonic() - started
    g.run(int, 'not a number')
    if not isinstance(g.wait(timeout=timeout, raise_exception=False), ValueError):
        raise ColdocTasksUsageError('the test task did not raise the expected ValueError')
    return elapsed
