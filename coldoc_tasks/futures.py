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


class TaskFuture(concurrent.futures.Future):
    """The future of one task of a :class:`TaskExecutor`; ``fork`` is its
    fork object.  :meth:`cancel` also works while the task runs."""

    def __init__(self, fork: ForkBase, executor: TaskExecutor):
        super().__init__()
        self.fork = fork
        self._executor = executor
        # Orders cancel() against the resolver's settling of the outcome.
        self._settling = threading.RLock()

    def running(self) -> bool:
        """True while the task is under way (submitted, not yet finished)."""
        return not self.done()

    def cancel(self) -> bool:
        """Cancel the future and terminate its task; False if its outcome is
        already known (then nothing changes).  The task is terminated in the
        background: ``cancel`` does not wait for it to stop."""
        with self._settling:
            if self.cancelled():
                return True
            if not super().cancel():
                return False
            self.set_running_or_notify_cancel()  # wakes wait() and as_completed() now
        self._executor._terminate(self.fork)
        return True

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
    is the caller's, in ``future.result(timeout)``.  Done callbacks run in the
    resolver thread: keep them short.  Usable with
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
        self._active: set[TaskFuture] = set()  # submitted, still watched by the resolver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watches: set[asyncio.Task] = set()

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
            self._active.add(future)
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
            for future in pending:
                future.cancel()
        if wait and self._thread is not None:
            self._thread.join()

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
        with self._lock:
            self._active.discard(future)
            if self._shutdown and not self._active:
                self._stop_loop()

    def _terminate(self, fork: ForkBase) -> None:
        # Not in the resolver's loop (terminate blocks for up to its grace),
        # nor in its default executor (celery's waits may fill it).
        def terminate() -> None:
            try:
                fork.terminate()
            except Exception:
                logger.exception('cannot terminate the task %s of a cancelled future', fork.task_id)

        threading.Thread(target=terminate, name=f'coldoc_tasks-terminate-{fork.task_id}', daemon=True).start()
