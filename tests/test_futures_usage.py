"""concurrent.futures as its users know it: TaskExecutor and TaskFuture
checked against the standard library's Executor and Future contract, on
every backend (see conftest.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

import pytest

from coldoc_tasks.exceptions import ColdocTasksProcessLookupError, ColdocTasksRemoteTraceback
from coldoc_tasks.futures import TaskExecutor
from tests import jobs, jobs_async
from tests.helpers import wait_process_gone
from tests.test_contract import needs, needs_process


@pytest.fixture
def executor(backend):
    with TaskExecutor(backend.make) as executor:
        yield executor


def test_result_and_exception_timeout(executor, backend, rendezvous):
    needs_process(backend)
    future = executor.submit(jobs.rendezvous, rendezvous.address, 'late')
    conn, _ = rendezvous.accept()
    start = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.2)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0.2)
    assert 0.3 <= time.monotonic() - start < 5
    assert not future.done()
    rendezvous.release(conn)
    assert future.result(timeout=30) == 'late'
    assert future.exception() is None


def test_done_callbacks_once_also_late_and_failing_ones_logged(executor, caplog):
    calls = []
    future = executor.submit(jobs.add, 1, 2)

    def boom(f):
        raise RuntimeError('callback fails')

    future.add_done_callback(lambda f: calls.append('first'))
    future.add_done_callback(boom)
    future.add_done_callback(calls.append)
    assert future.result(timeout=30) == 3
    deadline = time.monotonic() + 30
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    late = []
    with caplog.at_level(logging.ERROR, logger='concurrent.futures'):
        future.add_done_callback(boom)  # logged, not raised
        future.add_done_callback(late.append)
    assert late == [future]  # at once, in this thread
    assert calls == ['first', future]  # in the order they were added, each once
    assert 'exception calling callback' in caplog.text


def test_as_completed_and_wait(executor, backend, rendezvous):
    needs_process(backend)
    blocked = executor.submit(jobs.rendezvous, rendezvous.address, 'slow')
    conn, _ = rendezvous.accept()
    quick = executor.submit(jobs.add, 1, 1)
    failing = executor.submit(jobs.fail, 'x')
    done, not_done = concurrent.futures.wait([blocked, quick], timeout=30,
                                             return_when=concurrent.futures.FIRST_COMPLETED)
    assert quick in done and blocked in not_done
    done, not_done = concurrent.futures.wait([blocked, failing], timeout=30,
                                             return_when=concurrent.futures.FIRST_EXCEPTION)
    assert failing in done and blocked in not_done
    assert isinstance(failing.exception(), jobs.JobError)
    order = []
    iterator = concurrent.futures.as_completed([blocked, quick, failing], timeout=30)
    order.append(next(iterator))
    order.append(next(iterator))
    assert set(order) == {quick, failing}
    rendezvous.release(conn)
    assert next(iterator) is blocked
    assert blocked.result() == 'slow'


def test_as_completed_times_out(executor, backend, rendezvous):
    needs_process(backend)
    blocked = executor.submit(jobs.rendezvous, rendezvous.address)
    conn, _ = rendezvous.accept()
    with pytest.raises(concurrent.futures.TimeoutError):
        list(concurrent.futures.as_completed([blocked], timeout=0.2))
    rendezvous.release(conn)
    blocked.result(timeout=30)


def test_map_raises_the_failing_call_when_reached_and_is_lazy(executor, backend, rendezvous):
    results = executor.map(jobs.add, [1, 'a', 3], [1, 2, 3], timeout=60)
    assert next(results) == 2
    with pytest.raises(TypeError):
        next(results)
    needs_process(backend)
    results = executor.map(jobs.rendezvous, [None, rendezvous.address], ['first', 'second'], chunksize=4)
    # the first call fails at once (no address), the second blocks
    _, (pid,) = rendezvous.accept()
    with pytest.raises(TypeError):
        next(results)
    if backend.fork_class.can_terminate:  # what is left is cancelled, and so terminated
        assert wait_process_gone(pid, timeout=30)
    assert list(executor.map(jobs.identity, ['a', 'b'])) == ['a', 'b']


def test_map_yields_each_result_before_the_later_calls_end(executor, backend, tmp_path):
    needs_process(backend)
    release = tmp_path / 'release'
    results = executor.map(jobs.record_run, [str(tmp_path)] * 2, ['a', 'b'], ['A', 'B'], [None, str(release)],
                           timeout=60)
    assert next(results) == 'A'
    release.touch()
    assert next(results) == 'B'


def test_context_manager_waits_and_refuses(backend):
    with TaskExecutor(backend.make) as executor:
        futures = [executor.submit(jobs.add, i, 1) for i in range(4)]
    assert [f.done() for f in futures] == [True] * 4
    with pytest.raises(RuntimeError):
        executor.submit(jobs.add, 1)
    with pytest.raises(RuntimeError):
        executor.map(jobs.add, [1])


def test_cancel_running_coherent(executor, backend, rendezvous):
    needs_process(backend)
    needs(backend, 'can_terminate')
    future = executor.submit(jobs.rendezvous, rendezvous.address)
    _, (pid,) = rendezvous.accept()
    called = []
    future.add_done_callback(called.append)
    assert future.cancel() is True
    assert called == [future]
    assert future.cancelled() and future.done()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result()
    with pytest.raises(concurrent.futures.CancelledError):
        future.exception()
    assert wait_process_gone(pid, timeout=30)
    with pytest.raises(ColdocTasksProcessLookupError):
        future.fork.wait(timeout=30)


def test_wrap_future_and_run_in_executor(executor, backend, rendezvous):
    async def body():
        loop = asyncio.get_running_loop()
        a = asyncio.wrap_future(executor.submit(jobs.add, 2, 3))
        b = loop.run_in_executor(executor, jobs_async.async_add, 4, 5)
        c = asyncio.wrap_future(executor.submit(jobs.fail, 'w'))
        values = await asyncio.gather(a, b, c, return_exceptions=True)
        return values

    a, b, c = asyncio.run(asyncio.wait_for(body(), 60))
    assert (a, b) == (5, 9)
    assert isinstance(c, jobs.JobError) and isinstance(c.__cause__, ColdocTasksRemoteTraceback) or \
        backend.fork_class.runs_inline
    needs_process(backend)
    needs(backend, 'can_terminate')

    async def timed_out():
        loop = asyncio.get_running_loop()
        waiting = asyncio.wrap_future(executor.submit(jobs.rendezvous, rendezvous.address))
        _, (pid,) = await loop.run_in_executor(None, rendezvous.accept)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(waiting, 0.2)
        return pid

    pid = asyncio.run(asyncio.wait_for(timed_out(), 60))
    assert wait_process_gone(pid, timeout=30)


def test_threads_submit_and_add_callbacks_at_once(executor):
    calls: dict[int, int] = {}
    lock = threading.Lock()
    errors = []
    all_futures = []

    def count(f):
        with lock:
            calls[id(f)] = calls.get(id(f), 0) + 1

    def worker(n):
        try:
            futures = [executor.submit(jobs.add, n, i) for i in range(10)]
            for f in futures:
                f.add_done_callback(count)
            with lock:
                all_futures.extend(futures)
            assert [f.result(timeout=60) for f in futures] == [n + i for i in range(10)]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    deadline = time.monotonic() + 30
    while len(calls) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(all_futures) == 60
    assert sorted(calls.values()) == [1] * 60


def test_shutdown_from_another_thread_while_submitting(backend):
    executor = TaskExecutor(backend.make)
    submitted = []
    refused = []
    go = threading.Event()

    def submitter():
        go.wait()
        for i in range(30):
            try:
                submitted.append(executor.submit(jobs.add, i, 1))
            except RuntimeError:
                refused.append(i)

    threads = [threading.Thread(target=submitter) for _ in range(3)]
    for t in threads:
        t.start()
    go.set()
    executor.shutdown(wait=True)
    for t in threads:
        t.join(60)
    assert all(f.done() for f in submitted), [f for f in submitted if not f.done()]
    assert len(submitted) + len(refused) == 90


#: Backends whose fixtures run two tasks at a time: a third one waits in their queue.
POOL_OF_TWO = ('coldoc', 'celery')


def test_cancel_a_task_that_waits_in_the_queue(backend, rendezvous, tmp_path):
    if not backend.name.startswith(POOL_OF_TWO):
        pytest.skip(f'{backend} has no queue of tasks not yet started')
    executor = TaskExecutor(backend.make)
    blockers = [executor.submit(jobs.rendezvous, rendezvous.address, i) for i in range(2)]
    conns = [rendezvous.accept()[0] for _ in blockers]
    queued = executor.submit(jobs.record_run, str(tmp_path), 'queued', 'ran')
    also_queued = executor.submit(jobs.record_run, str(tmp_path), 'also', 'ran')
    assert queued.cancel()
    assert queued.cancelled()
    # cancel() terminates in the background: once that is done, the task never runs
    with pytest.raises(ColdocTasksProcessLookupError):
        queued.fork.wait(timeout=30)
    for conn in conns:
        rendezvous.release(conn)
    assert [b.result(timeout=30) for b in blockers] == [0, 1]
    assert executor.submit(jobs.add, 1, 1).result(timeout=30) == 2
    assert also_queued.result(timeout=30) == 'ran'
    executor.shutdown(wait=True, cancel_futures=True)
    assert not (tmp_path / 'queued').exists()


def test_shutdown_cancel_futures_cancels_the_queued_ones(backend, rendezvous, tmp_path):
    if not backend.name.startswith(POOL_OF_TWO):
        pytest.skip(f'{backend} has no queue of tasks not yet started')
    executor = TaskExecutor(backend.make)
    blockers = [executor.submit(jobs.rendezvous, rendezvous.address, i) for i in range(2)]
    pids = [rendezvous.accept()[1][0] for _ in blockers]
    queued = [executor.submit(jobs.record_run, str(tmp_path), f'q{i}', 'ran') for i in range(3)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued + blockers)
    for pid in pids:
        assert wait_process_gone(pid, timeout=30)
    # nothing left runs them later: a later task on the same backend comes back first
    f = backend.make()
    f.run(jobs.add, 1, 1)
    assert f.wait(timeout=30) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_done_callback_may_submit_and_wait(executor, backend):
    chained = []
    done = threading.Event()

    def then(f):
        follow = executor.submit(jobs.add, f.result(), 10)
        chained.append(follow.result(timeout=20))
        done.set()

    executor.submit(jobs.add, 1, 2).add_done_callback(then)
    assert done.wait(30)
    assert chained == [13]


def test_cancel_from_threads_while_tasks_finish(executor, backend):
    futures = [executor.submit(jobs.add, i, 1) for i in range(24)]
    calls: list = []
    for f in futures:
        f.add_done_callback(calls.append)
    answers: dict = {}

    def cancel(part):
        for f in part:
            answers[f] = f.cancel()

    threads = [threading.Thread(target=cancel, args=(futures[n::3],)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    for f in futures:
        assert answers[f] == f.cancelled()
        if not f.cancelled():
            assert f.result() == futures.index(f) + 1
    deadline = time.monotonic() + 30
    while len(calls) < len(futures) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(map(id, calls)) == sorted(map(id, futures))  # each callback once


def test_a_done_callback_may_shut_the_executor_down(backend):
    executor = TaskExecutor(backend.make)
    other = executor.submit(jobs.add, 2, 2)
    seen = []
    ended = threading.Event()

    def close(f):
        executor.shutdown(wait=True)
        seen.append(other.done())
        ended.set()

    executor.submit(jobs.add, 1, 1).add_done_callback(close)
    assert ended.wait(30)
    assert seen == [True] and other.result() == 4
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(jobs.add, 1)
