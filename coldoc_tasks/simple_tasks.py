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

import os
import signal
import threading
import weakref
from collections.abc import Callable

from .base import ForkBase, new_task_id
from .exceptions import (
    ColdocTasksBackendUnavailableError,
    ColdocTasksNotSupportedError,
    ColdocTasksUsageError,
)
from .forking import fork_task_process, signal_group
from .outcome import Outcome
from .progress import Progress
from .simple_child import Child, child_main, orphans

__all__ = ['SimpleFork', 'NoFork', 'fork_class', 'nofork_class', 'get_fork_class']


# Held from the creation of a child's pipe until the parent has closed its
# write end, so that a child forked meanwhile by another thread does not
# inherit that write end and keep the pipe open after the first child died.
_fork_lock = threading.Lock()

# Children of this process by task id, so that an unpickled copy of a fork
# object finds the child of its original.
_children: weakref.WeakValueDictionary[str, Child] = weakref.WeakValueDictionary()

def _reset_after_fork() -> None:
    # A child forked while another thread held _fork_lock would inherit it
    # locked; and its parent's children are not its own.
    global _fork_lock, _children
    _fork_lock = threading.Lock()
    _children = weakref.WeakValueDictionary()
    orphans.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _reap_orphans() -> None:
    for pid in list(orphans):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            orphans.discard(pid)












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
        self._child_ref: Child | None = None

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
                child_main(write_fd, cmd, args, kwargs)
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._owner_pid = os.getpid()
        self._child_ref = _children[task_id] = Child(task_id, pid, read_fd)
        return task_id

    def _child(self) -> Child:
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
