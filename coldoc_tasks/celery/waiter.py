"""A subtask run by the task that waits for it, in a child of its own.

A task in a worker's pool process that waits for a subtask nobody has started
yet claims it (:mod:`.celery_claims`) and runs it in a child process, so that
its pool slot is never held while the work it waits for sits in the queue
behind it, and so that its ``wait`` can still time out::

    pool process: the waiting task                 child (a process group of its own)
    wait(timeout) on subtask S
      claim S ('waiter'), store STARTED
      fork ---------------------------------------> the claim names this child
      reader thread                                 execute(call) -> outcome
        <-- pipe: [8-byte length][outcome] ------   store it in the result backend
        <-- pidfd: the child exited or died         os._exit
        sets the outcome, reaps the child
      wait() blocks on the reader's event, at most until its deadline

The reader thread drains the pipe (so the child never blocks on it), reaps
the child, and, if the child died before storing an outcome, stores its loss
in the result backend, naming the signal or exit code.  So a wait that times
out leaves the subtask running; a later wait, here or in any process that
reaches the result backend, gets its outcome as if a worker had run it; and
``terminate()`` signals the child's process group (from another process of
the same machine, through the pid and start time in the claim).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import celery
import celery.exceptions
from celery import states

from ..exceptions import ColdocTasksProcessLookupError, ColdocTasksTimeoutError
from ..forking import describe_wait_status, fork_task_process, signal_group
from ..outcome import Outcome, loads_outcome
from .app import forget_connections_after_fork
from .claims import Claim, claim, reclaim
from .progress import reporting_to_backend
from .worker import execute

__all__ = ['LocalRun', 'run_here_if_unclaimed', 'local_run', 'terminate_elsewhere', 'mark_terminated']

logger = logging.getLogger(__name__)

_HEADER = struct.Struct('!Q')
_READ_CHUNK = 1 << 20
#: Exit code of a child that failed outside the task (which never fails it).
_EXIT_INTERNAL = 70

# Held from the creation of a child's pipe until the parent has closed its
# write end, so that a child forked meanwhile by another thread does not keep
# the pipe open.
_fork_lock = threading.Lock()
# The subtasks this process runs in children, by task id, so that every copy
# of a fork object in this process finds its subtask's child.
_runs: weakref.WeakValueDictionary[str, LocalRun] = weakref.WeakValueDictionary()


def _reset_after_fork() -> None:
    global _fork_lock, _runs
    _fork_lock = threading.Lock()
    _runs = weakref.WeakValueDictionary()


os.register_at_fork(after_in_child=_reset_after_fork)

#: Maps a Celery state, its result and traceback to an outcome (the fork class's).
OutcomeOf = Callable[[str, Any, 'str | None'], Outcome]


class LocalRun:
    """A subtask running in a child of this process (see the module's docstring)."""

    def __init__(self, app: celery.Celery, task_id: str, cmd_name: str, pid: int, fd: int, outcome_of: OutcomeOf):
        self.app = app
        self.task_id = task_id
        self.cmd_name = cmd_name
        self.pid = pid
        self.outcome: Outcome | None = None
        self._fd = fd
        self._outcome_of = outcome_of
        self._done = threading.Event()
        # Guards the pid against reuse: no signal is sent once it is reaped.
        self._signal_lock = threading.Lock()
        self._reaped = False
        thread = threading.Thread(target=self._follow, name=f'coldoc_tasks-subtask-{pid}', daemon=True)
        thread.start()

    def collect(self, timeout: float | None, on_timeout: Callable[[], ColdocTasksTimeoutError]) -> Outcome:
        """The outcome, once known; raise ``on_timeout()`` after ``timeout`` seconds."""
        if not self._done.wait(timeout):
            raise on_timeout()
        assert self.outcome is not None
        return self.outcome

    def terminate(self, grace: float) -> None:
        """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds."""
        with self._signal_lock:
            if self._reaped:
                return
            pidfd = _pidfd(self.pid)
            signal_group(self.pid, signal.SIGTERM)
        logger.info('task %s (%s): SIGTERM sent to its process %s', self.task_id, self.cmd_name, self.pid)
        try:
            _wait_readable(pidfd, grace)
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        with self._signal_lock:
            if not self._reaped:
                signal_group(self.pid, signal.SIGKILL)

    def _follow(self) -> None:
        payload = None
        try:
            payload = _read_frame(self._fd, self.pid)
        except Exception:
            logger.exception('task %s: cannot read the outcome of its process %s', self.task_id, self.pid)
        finally:
            os.close(self._fd)
        if payload is not None:
            self.outcome = loads_outcome(payload)
            self._done.set()  # before reaping: the child may take a moment to exit
        status = self._reap()
        if payload is None:
            self.outcome = self._lost(status)
            self._done.set()

    def _reap(self) -> int:
        pidfd = _pidfd(self.pid)
        if pidfd >= 0:  # reaped under the lock only once surely gone, so terminate() never waits for it
            try:
                _wait_readable(pidfd, None)
            finally:
                os.close(pidfd)
        with self._signal_lock:
            _, status = os.waitpid(self.pid, 0)
            self._reaped = True
        return status

    def _lost(self, status: int) -> Outcome:
        """The outcome of a child that died before sending one, told to the result backend too."""
        what = f'task {self.task_id} ({self.cmd_name})'
        how = describe_wait_status(status)
        try:
            backend = self.app.backend
            meta = backend.get_task_meta(self.task_id, cache=False)
            if meta.get('status') in states.READY_STATES:  # terminated, or stored before it died
                return self._outcome_of(meta['status'], meta.get('result'), meta.get('traceback'))
            backend.mark_as_failure(self.task_id, celery.exceptions.WorkerLostError(
                f'process {self.pid}, which ran it for the task waiting for it, {how}'))
        except Exception:
            logger.exception('%s: cannot store in the result backend that its process %s %s', what, self.pid, how)
        logger.info('%s: its process %s %s before storing a result', what, self.pid, how)
        return Outcome(exception=ColdocTasksProcessLookupError(
            f'{what}: its process {self.pid} {how} before storing a result'))


def local_run(task_id: str | None) -> LocalRun | None:
    """The child of this process running subtask ``task_id``, if any."""
    return None if task_id is None else _runs.get(task_id)


def run_here_if_unclaimed(app: celery.Celery, task_id: str, cmd_name: str, data: bytes,
                          outcome_of: OutcomeOf) -> LocalRun | None:
    """Claim subtask ``task_id`` (its pickled call is ``data``) and run it in
    a child of this process; None if somebody else claimed it first, or if
    the result backend cannot hold claims."""
    backend = app.backend
    if not claim(backend, task_id, Claim.here('waiter')):
        return None
    backend.store_result(task_id, None, states.STARTED)  # so that a revoke does not overwrite it
    with _fork_lock:
        read_fd, write_fd = os.pipe()
        try:
            pid = fork_task_process()
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            backend.mark_as_failure(task_id, exc)  # claimed: nobody else will run it
            raise
        if pid == 0:
            os.close(read_fd)
            _child_main(app, task_id, data, write_fd)
        os.close(write_fd)
    reclaim(backend, task_id, Claim.of_child('waiter', pid))
    logger.debug('task %s (%s) not started yet: run by its waiting task, in process %s', task_id, cmd_name, pid)
    os.set_blocking(read_fd, False)
    run = _runs[task_id] = LocalRun(app, task_id, cmd_name, pid, read_fd, outcome_of)
    return run


def _child_main(app: celery.Celery, task_id: str, data: bytes, write_fd: int) -> None:
    """Body of the child; never returns."""
    code = 0
    try:
        forget_connections_after_fork(app)
        with reporting_to_backend(app.backend, task_id):
            payload = execute(data)
        try:
            app.backend.store_result(task_id, payload, states.SUCCESS)
        except Exception:  # the waiting task still gets it through the pipe
            logger.exception('task %s: cannot store its outcome in the result backend', task_id)
        view = memoryview(_HEADER.pack(len(payload)) + payload)
        with contextlib.suppress(BrokenPipeError):  # the waiting process is gone: the backend has it
            while view:
                view = view[os.write(write_fd, view):]
    except BaseException:  # a child must never return into the parent's code
        code = _EXIT_INTERNAL
        with contextlib.suppress(Exception):
            logger.exception('task %s: its process %s failed', task_id, os.getpid())
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _read_frame(fd: int, pid: int) -> bytes | None:
    """Read one frame from the (non-blocking) pipe ``fd`` of child ``pid``;
    None if the child exits, or the pipe ends, without a whole frame."""
    buffer = bytearray()
    pidfd = _pidfd(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if pidfd >= 0:
            # Watched besides the pipe: a process the child forked may hold its
            # write end, and then no end of file comes when the child dies.
            poller.register(pidfd, select.POLLIN)
        exited = False
        while True:
            eof = _read_available(fd, buffer)
            length = _HEADER.unpack_from(buffer)[0] if len(buffer) >= _HEADER.size else None
            if length is not None and len(buffer) >= _HEADER.size + length:
                return bytes(memoryview(buffer)[_HEADER.size:_HEADER.size + length])
            if eof or exited:
                return None
            exited = any(ready == pidfd for ready, _ in poller.poll())
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _read_available(fd: int, buffer: bytearray) -> bool:
    """Append what the pipe holds now to ``buffer``; True at end of file."""
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        buffer += chunk


def _pidfd(pid: int) -> int:
    if not hasattr(os, 'pidfd_open'):
        return -1
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1


def _wait_readable(fd: int, timeout: float | None) -> None:
    if fd >= 0:
        select.select([fd], [], [], timeout)
    elif timeout is not None:
        time.sleep(timeout)  # no pidfd on this system: the whole grace


def mark_terminated(backend: Any, task_id: str) -> None:
    """Store that task ``task_id`` was terminated, unless it has finished."""
    if backend.get_task_meta(task_id, cache=False).get('status') not in states.READY_STATES:
        backend.mark_as_revoked(task_id, reason='terminated')


def terminate_elsewhere(owner: Claim, grace: float) -> bool:
    """Terminate the process group of ``owner``, a subtask's child in another
    process of this machine: SIGTERM, SIGKILL after ``grace`` seconds if the
    same process is still there.  False if it runs on another machine."""
    if owner.pid is None or owner.host != socket.gethostname():
        return False
    if not owner.same_process_here():
        return True  # already gone
    pidfd = _pidfd(owner.pid)
    try:
        signal_group(owner.pid, signal.SIGTERM)
        _wait_readable(pidfd, grace)
    finally:
        if pidfd >= 0:
            os.close(pidfd)
    if owner.same_process_here():
        signal_group(owner.pid, signal.SIGKILL)
    return True
