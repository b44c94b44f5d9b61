"""concurrent.futures: TaskExecutor on every backend (see conftest.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading

import pytest

from coldoc_tasks.exceptions import (
    ColdocTasksProcessLookupError,
    ColdocTasksRemoteTraceback,
    ColdocTasksSerializationError,
)
from coldoc_tasks.futures import TaskExecutor, TaskFuture
from coldoc_tasks.simple_tasks import SimpleFork
from coldoc_tasks.task_utils import choose_best_fork_class
from tests import jobs, jobs_async
from tests.helpers import wait_process_gone
from tests.test_asyncio import EXECUTOR_WAITS
from tests.test_contract import needs, needs_process


@pytest.fixture
def executor(backend):
    with TaskExecutor(backend.make) as executor:
        yield executor


def test_submit_returns_the_value(executor):
    future = executor.submit(jobs.add, 'a', b='b')
    assert isinstance(future, concurrent.futures.Future) and isinstance(future, TaskFuture)
    assert future.result(timeout=30) == 'ab'
    assert future.done() and not future.running() and not future.cancelled()
    assert executor.submit(jobs_async.async_add, 1, 2).result(timeout=30) == 3


def test_exceptions_arrive_as_on_every_backend(executor, backend):
    future = executor.submit(jobs.fail, 'bad', 42)
    with pytest.raises(jobs.JobError) as info:
        future.result(timeout=30)
    assert info.value.args == ('bad', 42)
    assert future.exception(timeout=30) is info.value
    if not backend.fork_class.runs_inline:
        assert isinstance(info.value.__cause__, ColdocTasksRemoteTraceback)
        assert 'in fail' in str(info.value.__cause__)
    # A task that returns an exception returns it as a value.
    assert isinstance(executor.submit(jobs.identity, ValueError('v')).result(timeout=30), ValueError)


def test_a_lost_process_and_a_refused_call_arrive_on_the_future(executor, backend):
    needs_process(backend)
    with pytest.raises(ColdocTasksProcessLookupError, match='code 3'):
        executor.submit(jobs.exit_with, 3).result(timeout=30)
    if backend.fork_class.pickles_arguments:
        refused = executor.submit(jobs.identity, threading.Lock())
        assert isinstance(refused.exception(timeout=30), ColdocTasksSerializationError)


def test_map_in_order_with_a_timeout(executor, backend, rendezvous):
    assert list(executor.map(jobs.add, range(10), range(10), timeout=60)) == [2 * i for i in range(10)]
    needs_process(backend)
    results = executor.map(jobs.rendezvous, [rendezvous.address], timeout=0.3)
    _, (pid,) = rendezvous.accept()
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)
    if backend.fork_class.can_terminate:  # map cancels what is left, and so terminates it
        assert wait_process_gone(pid, timeout=30)


def test_cancel_terminates_a_running_task(executor, backend, rendezvous):
    needs_process(backend)
    needs(backend, 'can_terminate')
    future = executor.submit(jobs.rendezvous, rendezvous.address)
    _, (pid,) = rendezvous.accept()
    assert future.running() and not future.done()
    assert future.cancel()
    assert future.cancelled() and future.done() and not future.running()
    assert future.cancel()  # again: still cancelled
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=30)
    done, _ = concurrent.futures.wait([future], timeout=30)
    assert future in done
    assert wait_process_gone(pid, timeout=30)
    assert executor.submit(jobs.add, 1, 1).result(timeout=30) == 2


def test_cancel_after_the_outcome_changes_nothing(executor):
    future = executor.submit(jobs.add, 1, 2)
    assert future.result(timeout=30) == 3
    assert not future.cancel()
    assert future.result() == 3


def test_shutdown_waits_then_submit_is_refused(backend, rendezvous):
    needs_process(backend)
    executor = TaskExecutor(backend.make)
    future = executor.submit(jobs.rendezvous, rendezvous.address, 'done')
    conn, _ = rendezvous.accept()
    executor.shutdown(wait=False)
    with pytest.raises(RuntimeError, match='after shutdown'):
        executor.submit(jobs.add, 1)
    assert not future.done()
    rendezvous.release(conn)
    assert future.result(timeout=30) == 'done'
    executor.shutdown(wait=True)
    assert not executor._thread.is_alive()

    executor = TaskExecutor(backend.make)
    futures = [executor.submit(jobs.add, i, 1) for i in range(5)]
    executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [1, 2, 3, 4, 5]
    assert not executor._thread.is_alive()
    executor.shutdown()  # twice is fine


def test_shutdown_cancel_futures_terminates_running_tasks(backend, rendezvous):
    needs_process(backend)
    needs(backend, 'can_terminate')
    executor = TaskExecutor(backend.make)
    finished = executor.submit(jobs.add, 1, 1)
    assert finished.result(timeout=30) == 2
    future = executor.submit(jobs.rendezvous, rendezvous.address)
    _, (pid,) = rendezvous.accept()
    executor.shutdown(wait=True, cancel_futures=True)
    assert future.cancelled() and finished.result() == 2
    assert wait_process_gone(pid, timeout=30)
    assert not executor._thread.is_alive()


def test_run_in_executor(executor, backend, rendezvous):
    async def body():
        loop = asyncio.get_running_loop()
        values = await asyncio.gather(*(loop.run_in_executor(executor, jobs.add, i, 1) for i in range(5)))
        with pytest.raises(jobs.JobError):
            await loop.run_in_executor(executor, jobs.fail, 'x')
        return values

    assert asyncio.run(asyncio.wait_for(body(), 60)) == [1, 2, 3, 4, 5]
    needs_process(backend)
    needs(backend, 'can_terminate')

    async def cancelled():
        loop = asyncio.get_running_loop()
        waiting = loop.run_in_executor(executor, jobs.rendezvous, rendezvous.address)
        _, (pid,) = await loop.run_in_executor(None, rendezvous.accept)
        waiting.cancel()  # cancels the task's future, which terminates it
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return pid

    pid = asyncio.run(asyncio.wait_for(cancelled(), 60))
    assert wait_process_gone(pid, timeout=30)


def test_one_thread_resolves_every_future(backend, executor):
    threads_before = threading.active_count()
    futures = [executor.submit(jobs.add, i, 1) for i in range(20)]
    assert [f.result(timeout=60) for f in futures] == list(range(1, 21))
    if backend.fork_class.fork_type not in EXECUTOR_WAITS and not backend.fork_class.runs_inline:
        assert threading.active_count() <= threads_before + 1


def test_a_chooser_and_a_partial_as_fork_class(tmp_path):
    chooser = choose_best_fork_class(preferences=('simple',))
    with TaskExecutor(chooser) as executor:
        assert executor.submit(jobs.add, 2, 3).result(timeout=30) == 5
    with TaskExecutor(functools.partial(SimpleFork, timeout=0.01)) as executor:
        # the executor waits as long as the task runs, whatever the fork class's timeout
        assert executor.submit(jobs.slow_cpu, 0.2).exception(timeout=30) is None
    with pytest.raises(TypeError, match='fork'):
        TaskExecutor(42)
    with TaskExecutor(lambda: 'not a fork') as executor, pytest.raises(TypeError, match='not a fork object'):
        executor.submit(jobs.add, 1)
