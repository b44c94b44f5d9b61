"""Nested waits on the celery backend, with and without timeouts, on pools
of one and two processes (real workers on Redis and RabbitMQ, see
fixtures_celery.py).  A task that waits for a subtask nobody has started runs
it in a child process of its own: the chain completes, the wait still times
out at its deadline, and the subtask's outcome reaches every waiter."""

from __future__ import annotations

import importlib
import os
import re
import time

import pytest

from tests.conftest import IN_CI

importlib.import_module('celery') if IN_CI else pytest.importorskip('celery')  # CI must not skip

from coldoc_tasks import celery_tasks  # noqa: E402
from coldoc_tasks.exceptions import ColdocTasksProcessLookupError, ColdocTasksTimeoutError  # noqa: E402
from tests import jobs, jobs_celery  # noqa: E402
from tests.fixtures_celery import running_worker  # noqa: E402
from tests.helpers import wait_process_gone  # noqa: E402


@pytest.fixture(scope='module', params=['redis', 'rabbitmq'])
def one_slot_worker(request, tmp_path_factory):
    """A worker with a single pool process, once per broker."""
    with running_worker(tmp_path_factory.mktemp(f'celery-one-{request.param}'), request.param,
                        concurrency=1) as worker:
        yield worker


def parent_of(pid: int) -> int:
    with open(f'/proc/{pid}/stat') as stream:
        return int(stream.read().rpartition(')')[2].split()[1])


def still_serves(worker) -> None:
    """The worker answers a ping and runs a trivial task."""
    assert celery_tasks.ping(worker.celeryconfig, timeout=5)
    f = worker.fork_class()
    f.run(jobs.add, 2, 3)
    assert f.wait(timeout=30) == 5


def test_reliability_34_depth_3_with_inner_timeouts_on_a_pool_of_2(celery_worker):
    """RELIABILITY.md case 34: completes, without waiting out any timeout."""
    fork_class = celery_worker.fork_class
    start = time.monotonic()
    f = fork_class()
    f.run(jobs_celery.nested_with_timeouts, fork_class, 3, 3.0)
    assert f.wait(timeout=30) == [1, 2, 3]
    assert time.monotonic() - start < 3.0, 'an inner wait ran into its timeout'
    g = fork_class()  # two chains at once fill the pool with waiting tasks
    h = fork_class()
    g.run(jobs_celery.nested_with_timeouts, fork_class, 3, 3.0)
    h.run(jobs_celery.nested_with_timeouts, fork_class, 3, 60.0)
    assert g.wait(timeout=30) == [1, 2, 3] and h.wait(timeout=30) == [1, 2, 3]
    still_serves(celery_worker)


def test_depth_5_on_a_pool_of_1_with_and_without_timeouts(one_slot_worker):
    fork_class = one_slot_worker.fork_class
    f = fork_class()
    f.run(jobs_celery.nested_with_timeouts, fork_class, 5, 5.0)
    assert f.wait(timeout=60) == [1, 2, 3, 4, 5]
    g = fork_class()
    g.run(jobs.nested, fork_class, 5)
    assert g.wait(timeout=60) == [1, 2, 3, 4, 5]
    h = fork_class()
    h.run(jobs.nested, fork_class, 4, jobs.JobError('deep', 4))
    with pytest.raises(jobs.JobError):
        h.wait(timeout=60)
    assert 'in nested' in ''.join(h.traceback)
    still_serves(one_slot_worker)


def test_an_inner_wait_times_out_at_its_deadline_and_a_later_wait_gets_the_value(one_slot_worker, rendezvous):
    fork_class = one_slot_worker.fork_class
    f = fork_class()
    f.run(jobs_celery.wait_again_after_the_deadline, fork_class, rendezvous.address, 0.5)
    inner, (inner_pid,) = rendezvous.accept()
    outer, (outer_pid,) = rendezvous.accept()  # the outer task's wait timed out
    assert parent_of(inner_pid) == outer_pid  # the subtask runs in a child of the task waiting for it
    rendezvous.release(outer)
    with pytest.raises(ColdocTasksTimeoutError):
        f.wait(timeout=0.3)  # its second wait goes on, for as long as the subtask does
    rendezvous.release(inner)
    waited, value = f.wait(timeout=30)
    assert 0.5 <= waited < 1.5 and value == 'inner value'
    assert wait_process_gone(inner_pid, 10)
    still_serves(one_slot_worker)


def test_after_the_deadline_any_process_gets_the_subtasks_value(celery_worker, rendezvous):
    fork_class = celery_worker.fork_class
    f = fork_class()
    f.run(jobs_celery.wait_past_the_deadline, fork_class, rendezvous.address, 0.5)
    conn, (inner_pid,) = rendezvous.accept()
    waited, outer_pid, subtask = f.wait(timeout=30)  # the outer task has finished; its subtask goes on
    assert 0.5 <= waited < 1.5
    assert parent_of(inner_pid) == outer_pid
    with pytest.raises(ColdocTasksTimeoutError):
        subtask.wait(timeout=0.2)
    rendezvous.release(conn)
    assert subtask.wait(timeout=30) == 'inner value'  # stored in the result backend, as a worker does
    result = celery_tasks.app_for(celery_worker.celeryconfig).AsyncResult(subtask.task_id)
    assert result.state == 'SUCCESS'
    assert wait_process_gone(inner_pid, 10)


def test_a_subtask_run_by_its_waiter_and_killed_is_lost(celery_worker, rendezvous):
    fork_class = celery_worker.fork_class
    f = fork_class()
    f.run(jobs_celery.wait_past_the_deadline, fork_class, rendezvous.address, 0.2)
    _, (inner_pid,) = rendezvous.accept()
    _, _, subtask = f.wait(timeout=30)
    os.kill(inner_pid, 9)
    start = time.monotonic()
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGKILL'):
        subtask.wait(timeout=30)
    assert time.monotonic() - start < 5
    g = fork_class()
    g.run(jobs_celery.wait_for_subtask, fork_class, 30, jobs.exit_with, 3)
    kind, message = g.wait(timeout=30)
    # run by the waiting task's child, or by the other pool process if it took it first
    assert kind == 'ColdocTasksProcessLookupError' and re.search('exit(ed with )?code 3', message), message
    still_serves(celery_worker)


def test_terminate_a_subtask_from_another_process(celery_worker, rendezvous):
    fork_class = celery_worker.fork_class
    f = fork_class()
    f.run(jobs_celery.wait_past_the_deadline, fork_class, rendezvous.address, 0.2)
    _, (inner_pid,) = rendezvous.accept()
    _, _, subtask = f.wait(timeout=30)
    subtask.terminate()
    assert wait_process_gone(inner_pid, 10)
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        subtask.wait(timeout=30)
    still_serves(celery_worker)


def test_terminate_a_subtask_from_the_task_waiting_for_it(one_slot_worker, rendezvous):
    # one pool process, busy with the waiting task: nobody else can take the
    # subtask, so it must run in the waiter's child
    fork_class = one_slot_worker.fork_class
    f = fork_class()
    f.run(jobs_celery.terminate_a_subtask, fork_class, rendezvous.address)
    pids = {}
    connections = {}
    for _ in range(2):
        conn, sent = rendezvous.accept()
        kind = 'inner' if len(sent) == 2 else 'outer'
        pids[kind], connections[kind] = sent, conn
    inner_pid, grandchild = pids['inner']
    assert parent_of(inner_pid) == pids['outer'][0]
    rendezvous.release(connections['outer'])  # now it terminates the subtask, which ignores SIGTERM
    said = f.wait(timeout=30)
    assert said.startswith('ColdocTasksProcessLookupError') and 'terminated' in said
    assert wait_process_gone(inner_pid, 10) and wait_process_gone(grandchild, 10)
    still_serves(one_slot_worker)
