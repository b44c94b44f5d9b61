"""The fork-class contract that every backend keeps.

A *fork object* runs one callable, once, somewhere else, and hands back what
came of it::

    f = fork_class(use_fork=True, timeout=None, queue=None)
    f.run(cmd, *args, **kwargs)          # schedules cmd and returns at once
    value = f.wait(timeout=None, raise_exception=True)
    value = await f.wait_async(timeout=None, raise_exception=True)

:class:`ForkBase` implements the contract: the state machine (``run`` once,
then ``wait`` any number of times), the inline path of ``use_fork=False``,
the delivery of values and exceptions, thread safety and pickling.  A backend
subclass only implements the hooks ``_submit``, ``_collect`` and
``_terminate``, and may implement ``_collect_async`` (else ``wait_async``
blocks in a thread of the event loop's default executor).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from .durations import check_seconds, format_seconds
from .exceptions import (
    ColdocTasksProcessLookupError,
    ColdocTasksRemoteTraceback,
    ColdocTasksTimeoutError,
    ColdocTasksUsageError,
)
from .outcome import Outcome, call_capturing, describe_callable
from .progress import Progress, reporting_inline

__all__ = ['CAPABILITIES', 'ForkBase', 'new_task_id']

#: The names of the capability flags of a fork class (see :class:`ForkBase`).
CAPABILITIES: tuple[str, ...] = ('runs_inline', 'can_terminate', 'shared_wait', 'pickles_arguments', 'nested_waits')


class _SharedState:
    """What every fork object of one task in this process shares."""

    __slots__ = ('lock', 'outcome', 'pid', '__weakref__')

    def __init__(self):
        self.lock = threading.Lock()
        self.outcome: Outcome | None = None
        self.pid = os.getpid()


_shared_states: weakref.WeakValueDictionary[tuple[str, str], _SharedState] = weakref.WeakValueDictionary()
_shared_states_lock = threading.Lock()


def _shared_state(fork_type: str, task_id: str) -> _SharedState:
    key = (fork_type, task_id)
    with _shared_states_lock:
        state = _shared_states.get(key)
        if state is None:
            state = _shared_states[key] = _SharedState()
        return state


def _forget_shared_states_after_fork() -> None:
    # A child's copies must not share locks (maybe held) with its parent's.
    global _shared_states, _shared_states_lock
    _shared_states = weakref.WeakValueDictionary()
    _shared_states_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_shared_states_after_fork)


def new_task_id() -> str:
    """A fresh, unguessable task id."""
    return uuid.uuid4().hex


def check_timeout(timeout: float | None, name: str = 'timeout') -> float | None:
    """Validate a timeout in seconds: ``None`` (wait for ever) or a number
    from 0 to :data:`~coldoc_tasks.durations.MAX_SECONDS`."""
    return check_seconds(name, timeout, none_ok=True)


class ForkBase:
    """Run one callable in the background and collect its result.

    Parameters:
        use_fork: when false, ``run`` calls ``cmd`` inline, at once, in the
            calling thread; ``wait`` then behaves exactly as for a background
            task.  Handy when there is only one job and forking buys nothing.
        timeout: the default timeout of ``wait``, in seconds (``None``: wait
            for ever).
        queue: the name of the queue to run on, for backends that have
            queues; ``None`` or ``True`` mean the default queue.

    Attributes:
        fork_type: the backend's name (``'nofork'``, ``'simple'``, ``'coldoc'``,
            ``'celery'``).
        task_id: the task's id (a str), set by ``run``.
        exception: the exception ``cmd`` raised, once ``wait`` has seen it.
        traceback: the traceback of that exception as formatted where ``cmd``
            ran (a list of str), or ``None``.

    Capabilities (class attributes, each backend sets its own, all listed
    in :data:`CAPABILITIES` and returned by :meth:`capabilities`; a caller, or
    a test suite run over every backend, reads them instead of knowing which
    backend does what):
        runs_inline: every task runs inline, in ``run``, in the calling
            thread, whatever ``use_fork`` says (``nofork``); then
            :meth:`can_fork` is False.
        can_terminate: ``terminate`` stops a running task (False for
            ``nofork``, whose ``terminate`` raises
            :class:`ColdocTasksNotSupportedError`).
        shared_wait: a copy pickled after ``run`` can ``wait`` from another
            process of the machine (``coldoc``, ``celery``).  When False this
            is not promised: a ``simple`` copy can wait only in the process
            that ran the task, and elsewhere raises
            :class:`ColdocTasksUsageError` (a ``nofork`` copy merely carries
            the outcome it already had).
        pickles_arguments: the call crosses a process boundary pickled, so an
            argument that cannot be pickled is refused by ``run`` with
            :class:`ColdocTasksSerializationError` (``coldoc``, ``celery``);
            when False, arguments reach ``cmd`` as they are (``simple`` forks,
            ``nofork`` runs inline).
        nested_waits: a task may run tasks and wait for them, to any depth,
            without deadlock (every backend).

    Instances are thread-safe, and may be pickled after ``run``; where
    ``shared_wait`` is True, the copy can ``wait`` from another process too.
    """

    fork_type: ClassVar[str] = ''
    #: Every task runs inline, in ``run``, whatever ``use_fork`` says.
    runs_inline: ClassVar[bool] = False
    #: ``terminate`` stops a running task (else it raises ColdocTasksNotSupportedError).
    can_terminate: ClassVar[bool] = True
    #: A copy pickled after ``run`` can ``wait`` from another process.
    shared_wait: ClassVar[bool] = False
    #: The call is pickled to reach where it runs: ``run`` refuses an unpicklable argument.
    pickles_arguments: ClassVar[bool] = False
    #: A task may wait for tasks it ran, to any depth, without deadlock.
    nested_waits: ClassVar[bool] = True
    #: Seconds ``terminate`` waits after SIGTERM before it sends SIGKILL.
    terminate_grace: ClassVar[float] = 2.0
    #: The latest progress seen by this fork object (see :meth:`progress`).
    _progress: Progress | None = None

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None):
        self.use_fork = bool(use_fork) and self.can_fork()
        self.timeout = check_timeout(timeout)
        self.queue = queue
        self.task_id: str | None = None
        self.cmd_name: str | None = None
        self.exception: BaseException | None = None
        self.traceback: list[str] | None = None
        self._inline = False
        self._outcome: Outcome | None = None
        self._shared: _SharedState | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = 'new' if self.task_id is None else ('finished' if self._outcome is not None else 'pending')
        return f'<{type(self).__name__} {self.fork_type} task={self.task_id} cmd={self.cmd_name} {state}>'

    @classmethod
    def can_fork(cls) -> bool:
        """True if this backend runs tasks in another process (False for
        ``nofork``, whose tasks run inline: see ``runs_inline``); when False,
        ``use_fork`` is always False."""
        return not cls.runs_inline

    @classmethod
    def capabilities(cls) -> dict[str, bool]:
        """The capability flags of this fork class, by name."""
        return {name: getattr(cls, name) for name in CAPABILITIES}

    # -- the public contract ------------------------------------------------

    def run(self, cmd: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Schedule ``cmd(*args, **kwargs)`` and return at once.  ``cmd`` may
        be an ``async def`` function: its coroutine is run to completion with
        :func:`asyncio.run` where the task runs.

        Raises :class:`ColdocTasksUsageError` if ``run`` was already called or
        ``cmd`` is not callable, and :class:`ColdocTasksSerializationError` if
        the call cannot be sent to where it would run.
        """
        if inspect.iscoroutine(cmd):
            raise ColdocTasksUsageError(
                f'run() was given a coroutine object ({cmd.__qualname__}), which cannot be sent to another '
                f'process nor run in another event loop: pass the async function and its arguments, '
                f'run({cmd.__qualname__}, *args)')
        if not callable(cmd):
            raise ColdocTasksUsageError(f'run() needs a callable as its first argument, not {type(cmd).__name__}')
        with self._lock:
            if self.task_id is not None:
                raise ColdocTasksUsageError(f'run() was already called on this fork object (task {self.task_id})')
            self.cmd_name = describe_callable(cmd)
            if self.use_fork:
                self.task_id = self._submit(cmd, args, kwargs)
                self._shared_state()
            else:
                self.task_id = new_task_id()
                self._inline = True
                self._set_outcome(self._call_inline(cmd, args, kwargs))

    def wait(self, timeout: float | None = None, raise_exception: bool = True) -> Any:
        """Wait for the task and return its value.

        If ``cmd`` raised, raise an exception of the same type and arguments,
        with the remote traceback attached as its ``__cause__`` (with
        ``raise_exception=False`` the exception is returned instead).

        ``timeout`` (seconds; default: the one given to the constructor):
        raise :class:`ColdocTasksTimeoutError` when it passes; the task goes
        on and ``wait`` may be called again.  If the process running the task
        vanished, raise :class:`ColdocTasksProcessLookupError`.
        """
        timeout = self.timeout if timeout is None else check_timeout(timeout)
        if self.task_id is None:
            raise ColdocTasksUsageError('wait() was called before run()')
        outcome = self._outcome
        if outcome is None:
            # Copies of this fork object in this process (made by pickling)
            # share one state, so the outcome is collected once for all of
            # them.  The instance lock is not held while blocking, so that
            # terminate() from another thread never waits behind a wait().
            shared = self._shared_state()
            deadline = None if timeout is None else time.monotonic() + timeout
            if not shared.lock.acquire(timeout=-1 if timeout is None else timeout):
                raise self._timeout_error(timeout)
            try:
                if shared.outcome is None:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    shared.outcome = self._collect(remaining)
                collected = shared.outcome
            finally:
                shared.lock.release()
            outcome = self._adopt(collected)
        return self._deliver(outcome, raise_exception)

    async def wait_async(self, timeout: float | None = None, raise_exception: bool = True) -> Any:
        """:meth:`wait`, for a coroutine: the same value, exceptions and
        timeout, without blocking the event loop.

        Where the backend has something to wait on (the ``coldoc`` client's
        connection, the ``simple`` child's pipe) no thread is taken; ``nofork``
        has its outcome at once; ``celery`` waits in a thread of the loop's
        default executor (as does a second wait for the same task while one
        collects it).  Cancelling the coroutine stops the wait, not the task.
        """
        timeout = self.timeout if timeout is None else check_timeout(timeout)
        if self.task_id is None:
            raise ColdocTasksUsageError('wait_async() was called before run()')
        outcome = self._outcome
        if outcome is None:
            shared = self._shared_state()
            if not shared.lock.acquire(blocking=False):
                # Another thread (or coroutine) collects the outcome for every
                # copy of this task: wait behind it, in a thread, as wait() would.
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, functools.partial(self.wait, timeout, raise_exception))
            try:
                if shared.outcome is None:
                    shared.outcome = await self._collect_async(timeout)
                collected = shared.outcome
            finally:
                shared.lock.release()
            outcome = self._adopt(collected)
        return self._deliver(outcome, raise_exception)

    def _adopt(self, collected: Outcome) -> Outcome:
        """Take the outcome collected for every copy of the task, once."""
        with self._lock:
            if self._outcome is None:
                self._set_outcome(collected)
            return self._outcome

    @staticmethod
    def _deliver(outcome: Outcome, raise_exception: bool) -> Any:
        if outcome.exception is None:
            return outcome.value
        if isinstance(outcome.exception, ColdocTasksProcessLookupError) or raise_exception:
            raise outcome.exception
        return outcome.exception

    def progress(self) -> Progress | None:
        """The latest progress the task reported with
        :func:`coldoc_tasks.progress`, as ``Progress(done, total, message,
        metadata)``, or ``None`` if it reported none (yet).  Never blocks;
        after the task ended it keeps returning the last report."""
        if self.task_id is not None and not self._inline:
            latest = self._read_progress()
            if latest is not None:
                self._progress = latest
        return self._progress

    def terminate(self) -> None:
        """Stop the task.  A later ``wait`` raises
        :class:`ColdocTasksProcessLookupError`, unless the task had already
        finished, in which case this does nothing."""
        with self._lock:
            if self.task_id is None:
                raise ColdocTasksUsageError('terminate() was called before run()')
            if self._outcome is not None or self._inline:
                return
            self._terminate()

    # -- hooks for backends -------------------------------------------------

    def _submit(self, cmd: Callable, args: tuple, kwargs: dict) -> str:
        """Start running the call in the background; return the task id."""
        raise NotImplementedError

    def _collect(self, timeout: float | None) -> Outcome:
        """Block until the task's outcome is known (at most ``timeout``
        seconds, else raise :class:`ColdocTasksTimeoutError`) and return it.
        A vanished task is returned as an outcome whose exception is a
        :class:`ColdocTasksProcessLookupError`.  May be called from several
        threads at once."""
        raise NotImplementedError

    async def _collect_async(self, timeout: float | None) -> Outcome:
        """:meth:`_collect` for a coroutine, in the event loop's thread.  This
        default blocks in a thread of the loop's default executor; a backend
        with something to wait on overrides it."""
        return await asyncio.get_running_loop().run_in_executor(None, self._collect, timeout)

    def _terminate(self) -> None:
        """Stop the running task."""
        raise NotImplementedError

    def _read_progress(self) -> Progress | None:
        """The latest report known here now, without blocking (``None``:
        none new)."""
        return None

    def _timeout_error(self, timeout: float | None) -> ColdocTasksTimeoutError:
        return ColdocTasksTimeoutError(
            f'task {self.task_id} ({self.cmd_name}) did not finish within {format_seconds(timeout)} s')

    # -- internals ------------------------------------------------------------

    def _call_inline(self, cmd: Callable, args: tuple, kwargs: dict) -> Outcome:
        def store(report: Progress) -> None:
            self._progress = report
        with reporting_inline(store):
            return call_capturing(cmd, args, kwargs)

    def _set_outcome(self, outcome: Outcome) -> None:
        exc = outcome.exception
        if exc is not None and not isinstance(exc, ColdocTasksProcessLookupError):
            if not self._inline and outcome.traceback and exc.__cause__ is None:
                exc.__cause__ = ColdocTasksRemoteTraceback(''.join(outcome.traceback))
            self.exception = exc
            self.traceback = outcome.traceback
        self._outcome = outcome

    def _shared_state(self) -> _SharedState:
        # Held by the instance, so that the state lives as long as any copy.
        shared = self._shared
        if shared is None or shared.pid != os.getpid():  # none yet, or inherited through fork()
            shared = self._shared = _shared_state(self.fork_type, self.task_id)
        return shared

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state['_lock']
        state['_shared'] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        if self.task_id is not None:
            self._shared_state()
