"""asyncio: ``wait_async`` and ``async def`` tasks, on every backend (see conftest.py)."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import threading
import time

import pytest

from coldoc_tasks.exceptions import (
    ColdocTasksProcessLookupError,
    ColdocTasksRemoteTraceback,
    ColdocTasksTimeoutError,
    ColdocTasksUsageError,
)
from tests import jobs, jobs_async
from tests.test_contract import needs, needs_process

#: Backends whose wait_async waits on a thread of the loop's default executor
#: (they have no socket of ours to wait on; the docstring of CeleryFork says so).
EXECUTOR_WAITS = ('celery',)


def run(coro, timeout: float = 60.0):
    """Run ``coro`` in a fresh loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_wait_async_returns_the_value(backend):
    f = backend.make()
    f.run(jobs.add, 'a', b='b')
    assert run(f.wait_async(timeout=30)) == 'ab'
    assert run(f.wait_async()) == 'ab'  # again, from the outcome kept
    assert f.wait() == 'ab'


def test_wait_async_before_run_is_a_clear_error(backend):
    with pytest.raises(ColdocTasksUsageError, match='before run'):
        run(backend.make().wait_async())


def test_wait_async_raises_the_exception_with_its_remote_traceback(backend):
    f = backend.make()
    f.run(jobs.fail, 'bad', 42)
    with pytest.raises(jobs.JobError) as info:
        run(f.wait_async(timeout=30))
    assert info.value.args == ('bad', 42)
    assert f.exception is info.value
    assert 'in fail' in ''.join(f.traceback)
    if not backend.fork_class.runs_inline:
        assert isinstance(info.value.__cause__, ColdocTasksRemoteTraceback)
        assert 'in fail' in str(info.value.__cause__)
    g = backend.make()
    g.run(jobs.fail_with_value_error, 'nope')
    exc = run(g.wait_async(timeout=30, raise_exception=False))
    assert isinstance(exc, ValueError) and exc.args == ('nope',)



def blocked_task(backend, rendezvous, value=None, **options):
    """A fork object of ``backend`` whose task waits at the rendezvous to
    return ``value``; and the connection that releases it."""
    needs_process(backend)
    f = backend.make(**options)
    f.run(jobs.rendezvous, rendezvous.address, value)
    conn, _ = rendezvous.accept()
    return f, conn

def test_wait_async_timeout_then_the_value(backend, rendezvous):
    f, conn = blocked_task(backend, rendezvous, 'late')

    async def body():
        start = time.monotonic()
        with pytest.raises(ColdocTasksTimeoutError) as info:
            await f.wait_async(timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert 0.15 <= time.monotonic() - start < 2.0
        rendezvous.release(conn)
        return await f.wait_async(timeout=30)

    assert run(body()) == 'late'


def test_wait_async_reports_a_killed_process(backend, rendezvous):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.rendezvous, rendezvous.address)
    _, (pid,) = rendezvous.accept()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGKILL'):
        run(f.wait_async(timeout=30))
    with pytest.raises(ColdocTasksProcessLookupError):
        run(f.wait_async(raise_exception=False))


def test_wait_async_on_a_terminated_task(backend, rendezvous):
    needs_process(backend)
    needs(backend, 'can_terminate')
    f = backend.make()
    f.run(jobs.rendezvous, rendezvous.address)
    rendezvous.accept()

    async def body():
        waiting = asyncio.ensure_future(f.wait_async(timeout=30))
        await asyncio.get_running_loop().run_in_executor(None, f.terminate)
        return await waiting

    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        run(body())


def test_many_wait_async_on_one_loop_keep_it_responsive(backend, rendezvous):
    """Twenty tasks and one that blocks until the loop's own timer releases
    it: if a wait_async blocked the loop, the timer could not fire and the
    waits would end only at their timeout."""
    needs_process(backend)
    blocked = backend.make()
    blocked.run(jobs.rendezvous, rendezvous.address, 'released')
    conn, _ = rendezvous.accept()
    forks = [backend.make() for _ in range(20)]
    for i, f in enumerate(forks):
        f.run(jobs.add, i, 1)
    threads_before = threading.active_count()

    async def body():
        loop = asyncio.get_running_loop()
        ticks = []
        most_threads = [threads_before]

        def tick():
            ticks.append(time.monotonic())
            most_threads.append(threading.active_count())
            if len(ticks) == 10:
                rendezvous.release(conn)
            loop.call_later(0.01, tick)

        loop.call_later(0.01, tick)
        values = await asyncio.gather(blocked.wait_async(timeout=60), *(f.wait_async(timeout=60) for f in forks))
        return values, ticks, max(most_threads)

    values, ticks, most_threads = run(body(), timeout=90)
    assert values == ['released', *range(1, 21)]
    assert len(ticks) >= 10
    if backend.fork_class.fork_type not in EXECUTOR_WAITS:
        # No thread per waiting task (a loop's default executor would add them).
        assert most_threads <= threads_before + 1, (threads_before, most_threads)


def test_wait_async_of_a_pickled_copy(backend):
    needs(backend, 'shared_wait')
    f = backend.make()
    f.run(jobs.add, 20, 22)
    copy = pickle.loads(pickle.dumps(f))
    assert run(copy.wait_async(timeout=30)) == 42
    assert f.wait(timeout=30) == 42


def test_cancelled_wait_async_leaves_the_task_running(backend, rendezvous):
    f, conn = blocked_task(backend, rendezvous, 'still here')

    async def body():
        waiting = asyncio.ensure_future(f.wait_async())
        await asyncio.sleep(0)  # let it start waiting
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        rendezvous.release(conn)
        return await f.wait_async(timeout=30)

    assert run(body()) == 'still here'


# -- async def tasks -------------------------------------------------------


def test_async_def_task_runs_in_a_loop_where_the_task_runs(backend):
    f = backend.make()
    f.run(jobs_async.async_pid_in_loop)
    pid, in_loop = f.wait(timeout=30)
    assert in_loop is True
    assert (pid == os.getpid()) == backend.fork_class.runs_inline
    g = backend.make()
    g.run(jobs_async.async_gather, 10)
    assert g.wait(timeout=30) == sum(range(1, 11))


def test_async_def_task_exception_and_traceback(backend):
    f = backend.make()
    f.run(jobs_async.async_fail, 'deep', 7)
    with pytest.raises(jobs_async.AsyncJobError) as info:
        f.wait(timeout=30)
    assert info.value.args == ('deep', 7)
    assert 'in async_fail' in ''.join(f.traceback)


def test_async_def_task_run_from_a_coroutine(backend):
    """run() called in a running loop: an inline task runs in a loop of its
    own; a forked child does not mistake its parent's loop for its own."""

    async def body():
        f = backend.make()
        f.run(jobs_async.async_add, 2, b=3)
        g = backend.make(use_fork=False)
        g.run(jobs_async.async_add, 4, b=5)
        return await f.wait_async(timeout=30), await g.wait_async(timeout=30)

    assert run(body()) == (5, 9)


def test_a_coroutine_object_is_refused(backend):
    coro = jobs_async.async_add(1, 2)
    try:
        with pytest.raises(ColdocTasksUsageError, match='coroutine object.*async_add'):
            backend.make().run(coro)
    finally:
        coro.close()


def test_nested_async_tasks_await_each_other(backend):
    f = backend.make()
    f.run(jobs_async.async_nested, backend.make, 3)
    assert f.wait(timeout=120) == 'leaf'
