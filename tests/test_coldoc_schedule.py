"""Priorities, deferred tasks and kept results on a real coldoc server:
the order a busy queue starts its tasks in, a task held until its time,
many thousands of deferred tasks, and results read by id as often as wanted."""

from __future__ import annotations

import datetime
import os
import time

import pytest

from coldoc_tasks.coldoc.control import status
from coldoc_tasks.coldoc.fork import ColdocFork
from coldoc_tasks.coldoc.records import describe, submit_kept, terminate
from coldoc_tasks.exceptions import (
    ColdocTasksProcessLookupError,
    ColdocTasksUnknownTaskError,
    ColdocTasksUsageError,
)
from tests import jobs
from tests.helpers_coldoc import assert_healthy, wait_until


def _state(server, task_id):
    return describe(server.infofile, task_id).state


def test_higher_priority_starts_first_on_a_busy_queue(make_server, tmp_path):
    server = make_server(queues=('default:1:reuse',))
    gate = str(tmp_path / 'gate')
    os.mkfifo(gate)
    order = tmp_path / 'order'
    blocker = submit_kept(server.infofile, jobs.read_fifo, (gate,))
    wait_until(lambda: _state(server, blocker) == 'running', what='the blocking task runs')
    forks = []
    for name, priority in [('low', -5), ('zero-1', 0), ('high-1', 50), ('zero-2', 0), ('high-2', 50), ('top', 100)]:
        f = ColdocFork(infofile=server.infofile, priority=priority)
        f.run(jobs.append_line, str(order), name)
        forks.append(f)
    assert status(server.infofile)['tasks_queued'] == 6
    with open(gate, 'w') as stream:
        stream.write('go\n')
    for f in forks:
        f.wait(timeout=30)
    assert order.read_text().split() == ['top', 'high-1', 'high-2', 'zero-1', 'zero-2', 'low']
    assert_healthy(server)


def test_a_deferred_task_does_not_start_before_its_time(coldoc_server, tmp_path):
    stamp = str(tmp_path / 'started')
    run_after = time.time() + 1.0
    f = ColdocFork(infofile=coldoc_server.infofile, run_after=run_after)
    f.run(jobs.record_time, stamp)
    started = f.wait(timeout=30)
    assert started >= run_after, f'the task started {run_after - started:.3f} s before its time'


def test_an_aware_datetime_defers_too(coldoc_server, tmp_path):
    stamp = str(tmp_path / 'started')
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=0.5)
    f = ColdocFork(infofile=coldoc_server.infofile, run_after=when)
    f.run(jobs.record_time, stamp)
    assert f.wait(timeout=30) >= when.timestamp()


def test_a_deferred_task_can_be_cancelled(coldoc_server):
    f = ColdocFork(infofile=coldoc_server.infofile, run_after=time.time() + 3600)
    f.run(jobs.identity, 1)
    info = status(coldoc_server.infofile)
    assert info['tasks_deferred'] == 1
    assert [t['state'] for t in info['tasks']] == []  # held, not queued nor running
    f.terminate()
    with pytest.raises(ColdocTasksProcessLookupError, match='cancelled before it ran'):
        f.wait(timeout=30)
    assert status(coldoc_server.infofile)['tasks_deferred'] == 0
    assert_healthy(coldoc_server)


def test_many_thousands_of_deferred_tasks(coldoc_server):
    infofile = coldoc_server.infofile
    far = time.time() + 3600
    held = [submit_kept(infofile, jobs.identity, (i,), run_after=far + i % 100) for i in range(5000)]
    soon = time.time() + 0.5
    due = [submit_kept(infofile, jobs.identity, (i,), run_after=soon + (i % 10) / 100) for i in range(1000)]
    started = time.monotonic()
    info = status(infofile)
    assert time.monotonic() - started < 5, 'status stays responsive'
    wait_until(lambda: all(_state(coldoc_server, task_id) == 'done' for task_id in due[-10:]), timeout=60,
               what='the tasks that were due ran')
    for i, task_id in enumerate(due):
        facts = describe(infofile, task_id)
        assert facts.state == 'done' and facts.outcome().value == i
        assert facts.started >= facts.run_after
    info = status(infofile)
    assert info['tasks_deferred'] == 5000
    for task_id in held[:2500]:
        assert terminate(infofile, task_id) == 'cancelled'
    assert status(infofile)['tasks_deferred'] == 2500
    assert_healthy(coldoc_server)


def test_a_kept_result_is_read_by_id_as_often_as_wanted(coldoc_server):
    infofile = coldoc_server.infofile
    task_id = submit_kept(infofile, jobs.add, (2, 3), record=b'what the submitter keeps')
    wait_until(lambda: _state(coldoc_server, task_id) == 'done', what='the task ends')
    for _ in range(3):
        facts = describe(infofile, task_id)
        assert facts.outcome().value == 5
        assert facts.record == b'what the submitter keeps'
        assert facts.submitted <= facts.started <= facts.finished
        assert facts.worker_pid
    failed = submit_kept(infofile, jobs.fail_with_value_error, ('no good',))
    wait_until(lambda: _state(coldoc_server, failed) == 'failed', what='the task fails')
    outcome = describe(infofile, failed).outcome()
    assert isinstance(outcome.exception, ValueError) and 'no good' in outcome.traceback[-1]
    with pytest.raises(ColdocTasksUnknownTaskError, match='never submitted'):
        describe(infofile, 'f' * 32)


def test_bad_priorities_and_times_are_refused():
    with pytest.raises(ColdocTasksUsageError, match='from -100 to 100'):
        ColdocFork(use_fork=False, priority=101)
    with pytest.raises(ColdocTasksUsageError, match='whole number'):
        ColdocFork(use_fork=False, priority=1.5)
    with pytest.raises(ColdocTasksUsageError, match='aware datetime'):
        ColdocFork(use_fork=False, run_after=datetime.datetime.now())
    with pytest.raises(ColdocTasksUsageError, match='seconds since the epoch'):
        ColdocFork(use_fork=False, run_after='tomorrow')
