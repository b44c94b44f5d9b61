"""The ``simple`` backend (one ``os.fork()`` per task) and ``nofork`` (inline).

``simple``: ``run`` forks a child that calls ``cmd`` and writes its pickled
outcome to a pipe, framed by a kind byte and an 8-byte length, then exits::

    parent: run() --fork--> child: call cmd, pickle outcome
      progress() <-- pipe: [p][length][JSON report] ...  (coalesced, non-blocking)
            wait() <-- pipe: [r][length][outcome] --/  then os._exit(0)
            wait() <-- pidfd readable: the child exited (or died)

``wait`` blocks in ``poll`` on the pipe and on a pidfd of the child, so it
notices a death at once without polling, even when another process
inherited the pipe's write end and so no EOF will come.  The child runs in a
process group of its own, so ``terminate`` also stops what it started.

A ``simple`` task can be waited for only from the process that ran it: a
pickled copy works within that process and says so clearly elsewhere.
There is no message size limit: the outcome goes from the child straight to
the process that waits for it, with no server in between to protect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable

from .aio import wait_future
from .base import ForkBase, new_task_id
from .exceptions import (
    ColdocTasksBackendUnavailableError,
    ColdocTasksNotSupportedError,
    ColdocTasksProcessLookupError,
    ColdocTasksUsageError,
)
from .forking import describe_wait_status, fork_task_process, signal_group
from .outcome import Outcome, call_capturing, dumps_outcome, loads_outcome
from .progress import Progress, reporting

__all__ = ['SimpleFork', 'NoFork', 'fork_class', 'nofork_class', 'get_fork_class']

_HEADER = struct.Struct('!cQ')
_PROGRESS = b'p'
_RESULT = b'r'
_READ_CHUNK = 1 << 20

# Held from the creation of a child's pipe until the parent has closed its
# write end, so that a child forked meanwhile by another thread does not
# inherit that write end and keep the pipe open after the first child died.
_fork_lock = threading.Lock()

# Children of this process by task id, so that an unpickled copy of a fork
# object finds the child of its original.
_children: weakref.WeakValueDictionary[str, _Child] = weakref.WeakValueDictionary()

# Pids of children whose fork objects were dropped before anybody waited;
# reaped at the next run() so that they do not linger as zombies.
_orphans: set[int] = set()


def _reset_after_fork() -> None:
    # A child forked while another thread held _fork_lock would inherit it
    # locked; and its parent's children are not its own.
    global _fork_lock, _children, _orphans
    _fork_lock = threading.Lock()
    _children = weakref.WeakValueDictionary()
    _orphans = set()


os.register_at_fork(after_in_child=_reset_after_fork)


def _reap_orphans() -> None:
    for pid in list(_orphans):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _orphans.discard(pid)


def _abandon(pid: int, fd: int, state: dict) -> None:
    if not state['reaped']:
        _orphans.add(pid)
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


class _Child:
    """One forked child: its pid, the read end of its result pipe, and the
    bytes read so far.  Shared by every copy of the fork object in this
    process; all its methods are called with its lock held."""

    def __init__(self, task_id: str, pid: int, fd: int):
        self.task_id = task_id
        self.pid = pid
        self.fd = fd
        self.buffer = bytearray()
        self.outcome: Outcome | None = None
        self.progress: Progress | None = None
        self.terminated = False
        # Guards the pipe and the buffer: progress() reads them while a
        # wait() may be blocked on the pipe in another thread.
        self.read_lock = threading.Lock()
        # Guards the pid against reuse: no signal is sent once it is reaped.
        self.signal_lock = threading.Lock()
        self._state = {'reaped': False}
        self._finalizer = weakref.finalize(self, _abandon, pid, fd, self._state)

    def payload_complete(self) -> bool:
        """True when the result's frame is all in; reports before it are taken out."""
        buffer = self.buffer
        while len(buffer) >= _HEADER.size:
            kind, length = _HEADER.unpack_from(buffer)
            end = _HEADER.size + length
            if kind != _PROGRESS:
                return len(buffer) >= end
            if len(buffer) < end:
                return False
            with contextlib.suppress(ValueError):
                self.progress = Progress.from_dict(json.loads(bytes(buffer[_HEADER.size:end]))) or self.progress
            del buffer[:end]
        return False

    def poll_progress(self) -> Progress | None:
        """The latest report, after reading what the pipe holds now."""
        with self.read_lock:
            if self.fd >= 0 and self.outcome is None:
                self.read_available()
                self.payload_complete()
        return self.progress

    def read_available(self) -> bool:
        """Read what the pipe holds now; return True at end of file."""
        if self.fd < 0:
            return True
        while True:
            try:
                chunk = os.read(self.fd, _READ_CHUNK)
            except BlockingIOError:
                return False
            if not chunk:
                return True
            self.buffer += chunk

    def _complete(self) -> bool:
        with self.read_lock:
            return self.payload_complete()

    def reap(self) -> int:
        with self.signal_lock:
            _, status = os.waitpid(self.pid, 0)
            self._state['reaped'] = True
        self._finalizer()  # closes the pipe; nothing more to read
        self.fd = -1
        return status

    def collect(self, timeout: float | None, on_timeout: Callable[[], Exception]) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = os.pidfd_open(self.pid) if hasattr(os, 'pidfd_open') else -1
        try:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            if pidfd >= 0:
                poller.register(pidfd, select.POLLIN)
            exited = eof = False
            while not (self._complete() or exited or eof):
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = poller.poll(None if remaining is None else int(remaining * 1000) + 1)
                if not events and deadline is not None and time.monotonic() >= deadline:
                    raise on_timeout()
                for fd, _ in events:
                    if fd == pidfd:
                        exited = True
                with self.read_lock:
                    eof = self.read_available()
            if exited and not eof:
                with self.read_lock:
                    self.read_available()  # the child is gone: all it wrote is in the pipe
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        return self._finish()

    async def collect_async(self, timeout: float | None, on_timeout: Callable[[], Exception]) -> Outcome:
        """:meth:`collect` for a coroutine: the loop watches the pipe and a
        pidfd of the child (``loop.add_reader``), no thread is taken."""
        if self.outcome is not None:
            return self.outcome
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else time.monotonic() + timeout
        pidfd = os.pidfd_open(self.pid) if hasattr(os, 'pidfd_open') else -1
        exited = eof = False
        try:
            while True:
                with self.read_lock:
                    eof = self.read_available()
                complete = self._complete()
                if exited or eof or (complete and pidfd < 0):
                    break
                # Once all is read, only the exit is left to wait for (so that
                # reaping does not block the loop), and the timeout no longer counts.
                watched = [pidfd] if complete else [self.fd] + ([pidfd] if pidfd >= 0 else [])
                remaining = None if deadline is None or complete else max(0.0, deadline - time.monotonic())
                future = loop.create_future()
                for fd in watched:
                    loop.add_reader(fd, _resolve, future, fd)
                try:
                    if not await wait_future(future, remaining):
                        raise on_timeout()
                finally:
                    for fd in watched:
                        loop.remove_reader(fd)
                exited = future.result() == pidfd
            if exited and not eof:
                with self.read_lock:
                    self.read_available()  # the child is gone: all it wrote is in the pipe
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        return self._finish()

    def _finish(self) -> Outcome:
        """Reap the child and make its outcome of what it sent."""
        with self.read_lock:
            status = self.reap()
        if self._complete():
            self.outcome = loads_outcome(bytes(memoryview(self.buffer)[_HEADER.size:]))
        elif self.terminated:
            self.outcome = Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id} was terminated (its process {self.pid} {describe_wait_status(status)})'))
        else:
            self.outcome = Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: its process {self.pid} {describe_wait_status(status)} before sending a result'))
        self.buffer = bytearray()
        return self.outcome

    def terminate(self, grace: float) -> None:
        """SIGTERM the child's process group, SIGKILL it after ``grace``
        seconds.  Does not take ``lock``: a wait() may be blocked on it."""
        with self.signal_lock:
            if self._state['reaped']:
                return
            self.terminated = True
            pidfd = os.pidfd_open(self.pid) if hasattr(os, 'pidfd_open') else -1
            signal_group(self.pid, signal.SIGTERM)
        try:
            if pidfd >= 0:
                select.select([pidfd], [], [], grace)
            else:
                time.sleep(grace)
        finally:
            if pidfd >= 0:
                os.close(pidfd)
        with self.signal_lock:
            if not self._state['reaped']:
                signal_group(self.pid, signal.SIGKILL)


def _resolve(future: asyncio.Future, fd: int) -> None:
    if not future.done():
        future.set_result(fd)


def _send_progress(write_fd: int, report: Progress) -> bool:
    data = json.dumps(report.as_dict(), allow_nan=False).encode('utf-8', 'surrogatepass')
    try:
        # One write of at most PIPE_BUF bytes is atomic: all of it, or EAGAIN
        # when the pipe is full (the parent reads it only now and then), and
        # the report waits rather than the task.
        os.write(write_fd, _HEADER.pack(_PROGRESS, len(data)) + data)
    except BlockingIOError:
        return False
    return True


def _child_main(write_fd: int, cmd: Callable, args: tuple, kwargs: dict) -> None:
    """Body of a forked child; never returns."""
    code = 0
    try:
        os.set_blocking(write_fd, False)
        with reporting(lambda report: _send_progress(write_fd, report)):
            outcome = call_capturing(cmd, args, kwargs)
            os.set_blocking(write_fd, True)  # the last report, then the result, wait for room
        data = dumps_outcome(outcome)
        del outcome
        view = memoryview(_HEADER.pack(_RESULT, len(data)) + data)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:  # a child must never return into the parent's code
        code = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


class SimpleFork(ForkBase):
    """Run each task in a child made with ``os.fork()`` for it alone.

    The full contract of :class:`~coldoc_tasks.base.ForkBase`; ``queue`` is
    accepted and ignored.  ``wait`` works only in the process that called
    ``run`` (a pickled copy raises :class:`ColdocTasksUsageError` elsewhere).
    """

    fork_type = 'simple'
    #: The child's pid and result pipe belong to the process that ran the task.
    shared_wait = False
    #: The child inherits the call through fork(): arguments are never pickled.
    pickles_arguments = False

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None):
        super().__init__(use_fork=use_fork, timeout=timeout, queue=queue)
        self._owner_pid = os.getpid()
        self._child_ref: _Child | None = None

    def _submit(self, cmd: Callable, args: tuple, kwargs: dict) -> str:
        _reap_orphans()
        task_id = new_task_id()
        with _fork_lock:
            read_fd, write_fd = os.pipe()
            try:
                pid = fork_task_process()
            except BaseException:
                os.close(read_fd)
                os.close(write_fd)
                raise
            if pid == 0:
                os.close(read_fd)
                _child_main(write_fd, cmd, args, kwargs)
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._owner_pid = os.getpid()
        self._child_ref = _children[task_id] = _Child(task_id, pid, read_fd)
        return task_id

    def _child(self) -> _Child:
        if os.getpid() != self._owner_pid:  # a pickled copy, or one inherited through fork()
            raise ColdocTasksUsageError(
                f'a simple task can be waited for only from the process that ran it (pid {self._owner_pid}); '
                f'this is pid {os.getpid()}: use the coldoc or celery backend to share tasks between processes')
        if self._child_ref is None:
            child = _children.get(self.task_id)
            if child is None:
                raise ColdocTasksUsageError(
                    f'task {self.task_id} is no longer known in this process (every fork object of it was dropped)')
            self._child_ref = child
        return self._child_ref

    def _collect(self, timeout: float | None) -> Outcome:
        # ForkBase.wait serialises collection for every copy of this task in
        # this process (and a simple task lives in one process only).
        return self._child().collect(timeout, lambda: self._timeout_error(timeout))

    async def _collect_async(self, timeout: float | None) -> Outcome:
        return await self._child().collect_async(timeout, lambda: self._timeout_error(timeout))

    def _terminate(self) -> None:
        self._child().terminate(self.terminate_grace)

    def _read_progress(self) -> Progress | None:
        if os.getpid() != self._owner_pid:
            return None  # the pipe belongs to the process that ran the task
        try:
            return self._child().poll_progress()
        except ColdocTasksUsageError:
            return None

    @property
    def subprocess_pid(self) -> int | None:
        """The pid of the child running the task (``None`` before ``run``
        or when it ran inline)."""
        if self.task_id is None or self._inline:
            return None
        return self._child().pid

    def kill(self, signal_: int = signal.SIGTERM) -> None:
        """Send ``signal_`` to the child's process group, unless the task has
        already ended and been collected (as coldoc_tasks 0.2's ``kill``)."""
        if self.task_id is None:
            raise ColdocTasksUsageError('kill() was called before run()')
        if self._inline or self._outcome is not None:
            return
        child = self._child()
        with child.signal_lock:
            if not child._state['reaped']:
                signal_group(child.pid, signal_)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state['_child_ref'] = None
        return state


class NoFork(ForkBase):
    """Run each task inline, in ``run``, in the calling thread.

    For tests, debugging and one-off scripts: same ``wait`` semantics as the
    other backends, no process of its own.  ``terminate`` is not available.
    """

    fork_type = 'nofork'
    #: Tasks run in ``run`` (so :meth:`can_fork` is False).
    runs_inline = True
    #: The task has finished before ``run`` returns.
    can_terminate = False
    #: No task to share: a pickled copy only carries the outcome it had.
    shared_wait = False
    #: The call is made in place.
    pickles_arguments = False

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None):
        super().__init__(use_fork=False, timeout=timeout, queue=queue)

    def terminate(self) -> None:
        """Not available: a ``nofork`` task has finished before ``run`` returns."""
        raise ColdocTasksNotSupportedError('terminate() is not available in the nofork backend: the task ran inline')


fork_class = SimpleFork
nofork_class = NoFork


def get_fork_class(infofile: object = None, celeryconfig: object = None) -> type[SimpleFork]:
    """The ``simple`` fork class, if this platform can fork."""
    if not hasattr(os, 'fork'):
        raise ColdocTasksBackendUnavailableError('this platform has no os.fork()')
    return SimpleFork
