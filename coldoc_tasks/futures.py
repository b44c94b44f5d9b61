"""The fork classes as a :class:`concurrent.futures.Executor`.

::

    caller's thread                      the executor's resolver thread (one)
    ───────────────                      ────────────────────────────────────
    executor.submit(fn, *args)           an asyncio loop, one coroutine per task:
      fork = fork_class()
      fork.run(fn, *args)        ──►       await fork.wait_async(...)
      return TaskFuture (pending)          future.set_result / set_exception
    future.result(timeout)       ◄──
    future.cancel()              ──►     a short-lived thread: fork.terminate()

One thread per executor resolves every future: it waits on the fork objects
with :meth:`~coldoc_tasks.base.ForkBase.wait_async`, which takes no thread
on ``coldoc`` (the client's reader thread resolves it), ``simple`` (the loop
watches the child's pipe) and ``nofork`` (the outcome is there at once);
``celery`` has no socket of ours to wait on, and waits in threads of that
loop's default executor.

Done callbacks never run in the resolver thread: there a callback that
waits for another future of the executor would stop every future from
settling.  They run in a small pool of threads of the executor, started
when a callback is first due (or, as in the standard library, in the thread
that calls ``cancel``, or ``add_done_callback`` on a done future).

A :class:`TaskFuture` stays *pending*, as :mod:`concurrent.futures` sees it,
until its task's outcome is known, so that ``cancel()`` keeps working while
the task runs (a running stdlib future cannot be cancelled): it cancels the
future at once and terminates the task.  ``running()`` says whether the task
is under way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from .base import ForkBase

__all__ = ['TaskExecutor', 'TaskFuture']

logger = logging.getLogger(__name__)
#: Where the standard library logs the exceptions of done callbacks.
callbacks_logger = logging.getLogger('concurrent.futures')


class TaskFuture(concurrent.futures.Future):
    """The future of one task of a :class:`TaskExecutor`; ``fork`` is its
    fork object.  :meth:`cancel` also works while the task runs."""

    def __init__(self, fork: ForkBase, executor: TaskExecutor):
        super().__init__()
        self.fork = fork
        self._executor = executor
        # Orders cancel() against the resolver's settling of the outcome.
        self._settling = threading.RLock()
        # The done callbacks are kept here, not by the base class, so that
        # settling in the resolver thread does not run them (see the module).
        self._callbacks: list[Callable[[TaskFuture], object]] = []
        self._callbacks_taken = False

    def running(self) -> bool:
        """True while the task is under way (submitted, not yet finished)."""
        return not self.done()

    def cancel(self) -> bool:
        """Cancel the future and terminate its task; False if its outcome is
        already known (then nothing changes).  When it returns True the
        future is cancelled for good: ``result()`` and ``exception()`` raise
        :class:`concurrent.futures.CancelledError`, the done callbacks have
        run (in this thread), and the task is being terminated in the
        background: ``cancel`` does not wait for it to stop, so a task that
        was just starting may run a moment before it is stopped."""
        if self._cancel_future():
            self._executor._terminate([self.fork])
        return self.cancelled()

    def _cancel_future(self) -> bool:
        """Cancel the future, not its task: True if this call cancelled it."""
        with self._settling:
            if self.cancelled() or not super().cancel():
                return False
            self.set_running_or_notify_cancel()  # wakes wait() and as_completed() now
        self._run_callbacks(self._take_callbacks())
        return True

    def add_done_callback(self, fn: Callable[[TaskFuture], object]) -> None:
        """Call ``fn(future)`` once, when the future is done (at once, in this
        thread, if it already is).  Callbacks run in the order they were
        added, in a thread of the executor (in the thread that cancelled the
        future, if it was cancelled); what they raise is logged and ignored."""
        with self._settling:
            if not self._callbacks_taken:
                self._callbacks.append(fn)
                return
        self._run_callbacks([fn])

    def _take_callbacks(self) -> list[Callable[[TaskFuture], object]]:
        """The callbacks due, once the future is done; later ones run at once."""
        with self._settling:
            self._callbacks_taken = True
            callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def _run_callbacks(self, callbacks: list[Callable[[TaskFuture], object]]) -> None:
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                callbacks_logger.exception('exception calling callback for %r', self)

    def _settle_outcome(self, value: Any) -> None:
        """Settle with what ``wait(raise_exception=False)`` returned."""
        if self.fork.exception is not None:
            self._settle(exception=value)
        else:
            self._settle(value=value)

    def _settle(self, value: Any = None, exception: BaseException | None = None) -> None:
        with self._settling:
            if self.cancelled():
                return
            self.set_running_or_notify_cancel()
            if exception is None:
                self.set_result(value)
            else:
                self.set_exception(exception)


class TaskExecutor(concurrent.futures.Executor):
    """Run each submitted call as a task of ``fork_class``.

    ``fork_class`` is a fork class, a :func:`functools.partial` of one (to
    give ``queue``, ``infofile``, ...), or a chooser from
    :func:`coldoc_tasks.task_utils.choose_best_fork_class`: anything that,
    called with no argument, gives a fork object (or a fork class).

    ``submit`` runs the task at once, in the calling thread (so on
    ``nofork`` the call is made there, before ``submit`` returns); what
    ``run`` refuses (an argument that cannot be pickled, say) is the
    future's exception.  Exceptions arrive as ``wait`` raises them: the same
    type, with the remote traceback as ``__cause__``.  The executor waits for
    a task as long as it runs, whatever timeout the fork class has: a timeout
    is the caller's, in ``future.result(timeout)``.  Done callbacks run in a
    pool of threads of the executor, so that a callback may wait for another
    future (as long as the pool, of ``min(32, CPUs + 4)`` threads as a
    :class:`~concurrent.futures.ThreadPoolExecutor`'s, has one free).
    ``shutdown(cancel_futures=True)`` cancels every future not settled and
    terminates their tasks, the newest first.  Usable with
    ``loop.run_in_executor(executor, fn, *args)``; cancelling the awaiting
    coroutine cancels the future, and so terminates the task.
    """

    def __init__(self, fork_class: Callable[[], ForkBase | type[ForkBase]]):
        if not callable(fork_class):
            raise TypeError(f'TaskExecutor needs a fork class, or a callable that makes fork objects, '
                            f'not {type(fork_class).__name__}')
        self.fork_class = fork_class
        self._lock = threading.Lock()
        self._shutdown = False
        self._stopping = False
        # Submitted, still watched by the resolver; in the order of submission.
        self._active: dict[TaskFuture, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watches: set[asyncio.Task] = set()
        self._callback_pool: concurrent.futures.ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        state = 'shut down' if self._shutdown else f'{len(self._active)} active'
        return f'<{type(self).__name__} {self.fork_class!r} {state}>'

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> TaskFuture:
        """Run ``fn(*args, **kwargs)`` as a task; return its future.  Raise
        :class:`RuntimeError` after :meth:`shutdown`."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError('cannot schedule new futures after shutdown')
            fork = self._make_fork()
            fork.timeout = None
            future = TaskFuture(fork, self)
            self._active[future] = None
            loop = self._start()
        try:
            fork.run(fn, *args, **kwargs)
        except Exception as exc:
            future._settle(exception=exc)
            self._finished(future)
            return future
        if not fork.use_fork:  # it ran inline, in run(): its outcome is here
            try:
                future._settle_outcome(fork.wait(raise_exception=False))
            except Exception as exc:
                future._settle(exception=exc)
            self._finished(future)
            return future
        loop.call_soon_threadsafe(self._watch, future)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No more ``submit``; with ``cancel_futures``, cancel (and so
        terminate) every task not finished; with ``wait``, return when every
        future is settled and the resolver thread has ended."""
        with self._lock:
            self._shutdown = True
            pending = list(self._active)
            if not pending:
                self._stop_loop()
        if cancel_futures:
            # The newest first, one after the other: a task still queued is
            # stopped before the end of an older one could let it start.
            cancelled = [future.fork for future in reversed(pending) if future._cancel_future()]
            if cancelled:
                self._terminate(cancelled)
        if wait and self._thread is not None:
            self._thread.join()
            pool = self._callback_pool
            if pool is not None and not getattr(_in_callback_pool, 'flag', False):
                pool.shutdown(wait=True)  # the callbacks of the last futures have run

    # -- internals ------------------------------------------------------------

    def _make_fork(self) -> ForkBase:
        fork = self.fork_class()
        if isinstance(fork, type) and issubclass(fork, ForkBase):  # a chooser that returns a class
            fork = fork()
        if not isinstance(fork, ForkBase):
            raise TypeError(f'{self.fork_class!r} made a {type(fork).__name__}, not a fork object')
        return fork

    def _start(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._resolve, args=(self._loop,),
                                            name=f'coldoc_tasks-executor-{id(self):x}', daemon=True)
            self._thread.start()
        return self._loop

    def _stop_loop(self) -> None:
        # Called with the lock held.  Once only: a second stop() would
        # interrupt the loop's last run, which shuts its default executor down.
        if self._loop is not None and not self._stopping:
            self._stopping = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._callback_pool is not None:
                self._callback_pool.shutdown(wait=False)  # what it was given still runs

    @staticmethod
    def _resolve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def _watch(self, future: TaskFuture) -> None:
        task = asyncio.ensure_future(self._follow(future))
        self._watches.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._watches.discard)

    async def _follow(self, future: TaskFuture) -> None:
        try:
            future._settle_outcome(await future.fork.wait_async(raise_exception=False))
        except Exception as exc:  # the process was lost, the result expired, ...
            future._settle(exception=exc)
        finally:
            self._finished(future)

    def _finished(self, future: TaskFuture) -> None:
        callbacks = future._take_callbacks()
        if callbacks:
            if threading.current_thread() is self._thread:
                self._callback_pool_started().submit(_run_in_callback_pool, future, callbacks)
            else:  # settled in submit(), in the caller's thread
                future._run_callbacks(callbacks)
        with self._lock:
            self._active.pop(future, None)
            if self._shutdown and not self._active:
                self._stop_loop()

    def _callback_pool_started(self) -> concurrent.futures.ThreadPoolExecutor:
        # Only the resolver thread starts it, before the loop is stopped.
        if self._callback_pool is None:
            self._callback_pool = concurrent.futures.ThreadPoolExecutor(
                thread_name_prefix=f'coldoc_tasks-callbacks-{id(self):x}')
        return self._callback_pool

    def _terminate(self, forks: list[ForkBase]) -> None:
        # Not in the resolver's loop (terminate blocks for up to its grace),
        # nor in its default executor (celery's waits may fill it).
        def terminate() -> None:
            for fork in forks:
                try:
                    fork.terminate()
                except Exception:
                    logger.exception('cannot terminate the task %s of a cancelled future', fork.task_id)

        threading.Thread(target=terminate, name=f'coldoc_tasks-terminate-{forks[0].task_id}', daemon=True).start()


_in_callback_pool = threading.local()


def _run_in_callback_pool(future: TaskFuture, callbacks: list[Callable[[TaskFuture], object]]) -> None:
    # Marks the thread, so that a callback calling shutdown(wait=True) does not wait for itself.
    _in_callback_pool.flag = True
    future._run_callbacks(callbacks)
