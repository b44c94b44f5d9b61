"""The two ends of a ``simple`` task's pipe: :func:`child_main`, what the
forked child runs and writes (progress reports, then the outcome), and
:class:`Child`, the parent's record of the child, which reads them, notices
the child's death at once through a pidfd, and terminates it.  The fork
class itself is :class:`coldoc_tasks.simple_tasks.SimpleFork`."""

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
from .exceptions import ColdocTasksProcessLookupError
from .forking import describe_wait_status, signal_group
from .outcome import Outcome, call_capturing, dumps_outcome, loads_outcome
from .progress import Progress, reporting

__all__ = ['Child', 'child_main', 'abandon', 'orphans']

# Pids of children whose fork objects were dropped before anybody waited;
# reaped at the next run() so that they do not linger as zombies.
orphans: set[int] = set()


_HEADER = struct.Struct('!cQ')


_PROGRESS = b'p'


_RESULT = b'r'


_READ_CHUNK = 1 << 20


def abandon(pid: int, fd: int, state: dict) -> None:
    if not state['reaped']:
        orphans.add(pid)
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


class Child:
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
        self._finalizer = weakref.finalize(self, abandon, pid, fd, self._state)

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


def child_main(write_fd: int, cmd: Callable, args: tuple, kwargs: dict) -> None:
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
