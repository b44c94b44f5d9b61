"""asyncio as its users know it: ``wait_async`` under ``asyncio.wait_for``,
timeouts as ``wait``'s, many waits for one task, on every backend (see
conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from coldoc_tasks.exceptions import ColdocTasksTimeoutError
from tests import jobs_async
from tests.test_asyncio import blocked_task, run


def test_wait_for_timeout_leaves_the_task_and_the_fork_object_usable(backend, rendezvous):
    f, conn = blocked_task(backend, rendezvous, 'after')

    async def body():
        for _ in range(3):  # more than once: each cancelled wait leaves nothing behind
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(f.wait_async(), 0.1)
        rendezvous.release(conn)
        return await asyncio.wait_for(f.wait_async(), 30)

    assert run(body()) == 'after'
    assert f.wait(timeout=30) == 'after'


def test_timeouts_are_those_of_wait(backend, rendezvous):
    f, conn = blocked_task(backend, rendezvous, 'v', timeout=0.2)  # the constructor's timeout: both's default

    async def body():
        start = time.monotonic()
        with pytest.raises(ColdocTasksTimeoutError, match='did not finish within'):
            await f.wait_async()
        assert 0.15 <= time.monotonic() - start < 5
        with pytest.raises(ColdocTasksTimeoutError):
            await f.wait_async(timeout=0)
        with pytest.raises(ValueError):
            await f.wait_async(timeout=-1)

    run(body())
    with pytest.raises(ColdocTasksTimeoutError, match='did not finish within'):
        f.wait()
    with pytest.raises(ValueError):
        f.wait(timeout=-1)
    rendezvous.release(conn)
    assert run(f.wait_async(timeout=30)) == 'v'


def test_many_coroutines_wait_for_one_task(backend, rendezvous):
    f, conn = blocked_task(backend, rendezvous, 'shared')

    async def body():
        waits = [asyncio.ensure_future(f.wait_async(timeout=60)) for _ in range(8)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waits)
        rendezvous.release(conn)
        return await asyncio.gather(*waits)

    assert run(body()) == ['shared'] * 8


def test_async_def_tasks_raising_and_returning_together(backend):
    async def body():
        forks = [backend.make() for _ in range(6)]
        for i, f in enumerate(forks):
            if i % 2:
                f.run(jobs_async.async_fail, 'odd', i)
            else:
                f.run(jobs_async.async_add, i, 1)
        return await asyncio.gather(*(f.wait_async(timeout=60) for f in forks), return_exceptions=True)

    outcomes = run(body())
    for i, outcome in enumerate(outcomes):
        if i % 2:
            assert isinstance(outcome, jobs_async.AsyncJobError) and outcome.args == ('odd', i)
        else:
            assert outcome == i + 1
