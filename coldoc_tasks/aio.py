"""What the package needs of asyncio, in one place.

* :func:`run_coroutine`: an ``async def`` task is run to completion, in the
  process that runs the task, with :func:`asyncio.run`.
* :func:`threadsafe_future` and :func:`wait_future`: a thread of ours (the
  coldoc client's reader thread, say) resolves a future of an event loop, so
  that a coroutine waits for it without a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ['run_coroutine', 'threadsafe_future', 'wait_future']


def run_coroutine(coro: Coroutine) -> Any:
    """Run ``coro`` to completion with :func:`asyncio.run` and return its
    value (or raise its exception).

    When an event loop already runs in this thread (a task run inline, by
    ``nofork`` or ``use_fork=False``, from a coroutine), ``asyncio.run``
    cannot be nested: the coroutine then runs in a loop of its own in a
    helper thread, and this thread blocks until it ends, as an inline task
    does."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box['value'] = asyncio.run(coro)
        except BaseException as exc:  # handed to the calling thread
            box['exception'] = exc

    thread = threading.Thread(target=body, name='coldoc_tasks-inline-coroutine')
    thread.start()
    thread.join()
    if 'exception' in box:
        exc = box.pop('exception')
        try:
            raise exc
        finally:
            del exc
    return box['value']


def threadsafe_future(loop: asyncio.AbstractEventLoop) -> tuple[asyncio.Future, Callable[[], None]]:
    """A future of ``loop`` and a function that any thread may call (once or
    more) to resolve it with ``None``.  The function never raises: it runs in
    reader threads that must survive a closed loop."""
    future = loop.create_future()

    def resolve() -> None:
        if not future.done():
            future.set_result(None)

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(resolve)

    return future, wake


async def wait_future(future: asyncio.Future, timeout: float | None) -> bool:
    """Wait for ``future`` at most ``timeout`` seconds (``None``: for ever);
    True if it is done.  The future is not cancelled on timeout."""
    if timeout is None:
        await future
        return True
    if not future.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), timeout)
    return future.done()
