"""What runs inside a Celery worker for the ``celery`` backend.

Every call travels as one generic Celery task, :data:`RUN_TASK_NAME`, whose
only argument is the pickled call and whose result is the pickled outcome;
a pool process runs it in :func:`run_pickled_call`::

    worker main process                 pool process (leads its own process group)
    receives RUN_TASK_NAME(bytes) --->  claim the task id (celery_claims)
                                        loads_call -> call_capturing(cmd, ...)
                                          progress() -> update_state('PROGRESS')  (.progress)
                                        dumps_outcome -> bytes -> result backend

The task is acknowledged early and never requeued, so a pool process that
dies (SIGKILL, a crash, ``os._exit``) makes Celery store a ``WorkerLostError``
naming the signal or exit code: :class:`CeleryTaskPool` makes that known at
once.  :func:`coldoc_tasks_terminate`, a control command the worker's main
process runs, revokes a task and signals the process group of the pool process
running it: SIGTERM, then SIGKILL after a grace period.

Importing this module registers the control command and the signal handlers;
the names :data:`RUN_TASK_NAME` and :data:`TERMINATE_COMMAND` are what the
submitting side and the worker agree on, so they never change.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import traceback
from typing import Any

import celery
import celery.exceptions
import celery.signals
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool as PreforkTaskPool
from celery.worker.control import control_command

try:
    from billiard.common import terminate_handler_fired as _terminate_handler_fired
except ImportError:  # an older billiard: no way to tell, so every failure is the task's own
    def _terminate_handler_fired() -> bool:
        return False

from ..exceptions import ColdocTasksSerializationError
from ..outcome import Outcome, call_capturing, dumps_outcome, loads_call
from .claims import Claim, claim
from .progress import PROGRESS_STATE, reporting_to_backend

__all__ = ['RUN_TASK_NAME', 'TERMINATE_COMMAND', 'CeleryTaskPool', 'run_pickled_call', 'execute',
           'in_worker_slot', 'announce_ready_through']

logger = logging.getLogger(__name__)

#: The name of the one Celery task that runs every call.
RUN_TASK_NAME = 'coldoc_tasks.run_pickled_call'
#: The worker control command that terminates a task (see :func:`coldoc_tasks_terminate`).
TERMINATE_COMMAND = 'coldoc_tasks_terminate'

# True in a process that runs tasks for a worker (and in what it forks): a wait
# there holds a pool slot, so it may run a subtask that nobody started.
_in_worker_slot = False
# The write end of a pipe to the process that started this worker (daemon()),
# written to once the worker is ready.
_ready_fd: int | None = None
# daemon() with no log file gives the worker a temporary file for its output,
# only so as to report why a worker that failed to start did: once ready, the
# worker's processes write nowhere instead.
_silence_after_ready = False


def in_worker_slot() -> bool:
    """True in a process that runs tasks for a worker, and in what it forks."""
    return _in_worker_slot


# The celeryconfig of the worker this process belongs to, if it was started by start().
_serving: str | None = None


def serve_celeryconfig(path: str) -> None:
    """Record that this process runs a worker for the celeryconfig ``path``."""
    global _serving
    _serving = path


def serving(path: str) -> bool:
    """True in a task of a worker for the celeryconfig ``path``: that
    worker is alive, with no need to ask it."""
    return _in_worker_slot and _serving == path


def announce_ready_through(fd: int | None, silence: bool = False) -> None:
    """Write to ``fd`` (then close it) when this process's worker is ready;
    with ``silence``, send the output of its processes to /dev/null from then on."""
    global _ready_fd, _silence_after_ready
    _ready_fd = fd
    _silence_after_ready = silence


def _silence_output() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)


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
    if _silence_after_ready:
        _silence_output()


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
        if _silence_after_ready:
            _silence_output()


def execute(data: bytes) -> bytes:
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
    if claim(task.backend, task_id, Claim.here('worker', task.request.hostname)) is False:
        logger.info('task %s was run or terminated elsewhere: not running it', task_id)
        raise celery.exceptions.Ignore()
    with reporting_to_backend(task.backend, task_id,
                              lambda meta: task.update_state(task_id=task_id, state=PROGRESS_STATE, meta=meta)):
        return execute(data)


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
    Workers started by :func:`~coldoc_tasks.celery.control.start` use it; for
    a worker of your own, set
    ``worker_pool = 'coldoc_tasks.celery.worker:CeleryTaskPool'``."""

    Pool = _AsynPool
