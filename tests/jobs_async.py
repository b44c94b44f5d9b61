"""``async def`` tasks for the tests (importable by every backend's workers)."""

from __future__ import annotations

import asyncio
import os


class AsyncJobError(Exception):
    pass


async def async_add(a, b=0):
    await asyncio.sleep(0)
    return a + b


async def async_pid_in_loop():
    """This process's pid, and whether an event loop runs this coroutine."""
    await asyncio.sleep(0)
    return os.getpid(), asyncio.get_running_loop().is_running()


async def async_fail(*args):
    await asyncio.sleep(0)
    raise AsyncJobError(*args)


async def async_gather(n):
    """Runs n coroutines concurrently in the task's own loop."""
    return sum(await asyncio.gather(*(async_add(i, 1) for i in range(n))))


async def async_nested(make_fork, depth):
    """A chain of ``depth`` async tasks, each awaiting the next with wait_async."""
    if depth == 0:
        return 'leaf'
    f = make_fork()
    f.run(async_nested, make_fork, depth - 1)
    return await f.wait_async(timeout=120)
