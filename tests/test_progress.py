"""Progress: coldoc_tasks.progress() inside a task, f.progress() outside,
on every backend (see conftest.py), and the coalescing that keeps it cheap."""

from __future__ import annotations

import json
import threading
import time

import pytest

import coldoc_tasks
from coldoc_tasks import Progress
from coldoc_tasks.coldoc.cli import format_status
from coldoc_tasks.coldoc.control import status
from coldoc_tasks.exceptions import ColdocTasksUsageError
from coldoc_tasks.progress import Reporter, reporting
from tests import jobs
from tests.test_cli import run_cli


def wait_for_progress(f, wanted, timeout: float = 20.0) -> Progress:
    """Read ``f.progress()`` (which never blocks) until ``wanted(report)``;
    fail after ``timeout`` seconds, saying what was last seen."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = f.progress()
        if seen is not None and wanted(seen):
            return seen
        time.sleep(0.01)
    raise AssertionError(f'no such progress within {timeout} s; last seen: {seen!r}')


def test_progress_while_running_and_after_the_end(backend, rendezvous):
    f = backend.make()
    if backend.fork_class.runs_inline:
        # the task ran in run(): its reports are on the fork object already
        f.run(jobs.report_many, 10)
    else:
        f.run(jobs.report_then_rendezvous, rendezvous.address, 3, 10, 'three of ten')
        conn, _ = rendezvous.accept()
        seen = wait_for_progress(f, lambda report: report.done == 3)
        assert seen == Progress(3, 10, 'three of ten', {'stage': 'first'})
        assert seen.done == 3 and seen.total == 10 and seen.message == 'three of ten'
        rendezvous.release(conn)
    f.wait(timeout=60)
    last = f.progress()
    if backend.fork_class.runs_inline:
        assert last == Progress(10, 10, 'step', {})
    else:
        assert last == Progress(10, 10, 'finished', {'stage': 'last'})
    assert f.progress() == last  # it stays


def test_no_progress_is_none(backend):
    f = backend.make()
    assert f.progress() is None  # before run()
    f.run(jobs.add, 1, 2)
    assert f.wait(timeout=60) == 3
    assert f.progress() is None


def test_inline_run_keeps_its_progress(backend):
    f = backend.make(use_fork=False)
    f.run(jobs.report_many, 5)
    assert f.progress() == Progress(5, 5, 'step', {})


def test_a_tight_loop_is_coalesced_and_ends_with_the_last_report(backend):
    f = backend.make()
    started = time.monotonic()
    f.run(jobs.report_many, 100_000)
    spent_in_task = f.wait(timeout=60)
    # Sent one by one, 100,000 reports would take many seconds on the
    # coldoc and celery backends; coalesced, a few microseconds each.
    assert spent_in_task < 5.0, f'100,000 reports took {spent_in_task:.2f} s in the task'
    assert time.monotonic() - started < 30
    assert f.progress() == Progress(100_000, 100_000, 'step', {})


@pytest.mark.parametrize('what', ['done', 'total', 'message', 'metadata'])
def test_a_bad_argument_is_a_usage_error_in_the_task(backend, what):
    f = backend.make()
    f.run(jobs.report_bad, what)
    with pytest.raises(ColdocTasksUsageError, match=f'progress\\(\\): {what}'):
        f.wait(timeout=60)


def test_outside_a_task_progress_does_nothing_but_check():
    assert coldoc_tasks.progress(1, 2, 'outside', key='value') is None
    with pytest.raises(ColdocTasksUsageError, match='done must be a finite number >= 0'):
        coldoc_tasks.progress('1')
    with pytest.raises(ColdocTasksUsageError, match='done must be'):
        coldoc_tasks.progress(True)
    with pytest.raises(ColdocTasksUsageError, match='total must be'):
        coldoc_tasks.progress(1, -2)
    with pytest.raises(ColdocTasksUsageError, match='message must be a str'):
        coldoc_tasks.progress(1, 2, None)
    with pytest.raises(ColdocTasksUsageError, match='JSON-serialisable'):
        coldoc_tasks.progress(1, data={1, 2})
    with pytest.raises(ColdocTasksUsageError, match='over the limit'):
        coldoc_tasks.progress(1, data='x' * 5000)


def test_reporter_sends_at_most_one_report_per_interval_and_always_the_last():
    sent = []
    delivered = threading.Event()

    def send(report):
        sent.append(report)
        delivered.set()

    with reporting(send, interval=0.2):
        start = time.monotonic()
        for i in range(100_000):
            coldoc_tasks.progress(i + 1, 100_000)
        elapsed = time.monotonic() - start
    assert sent[-1].done == 100_000
    assert len(sent) <= elapsed / 0.2 + 2, f'{len(sent)} reports sent in {elapsed:.2f} s'


def test_reporter_sends_a_pending_report_after_the_interval():
    # A task that reports twice, then works for long, shows its second report
    # while it works: a timer sends it.
    arrived = threading.Event()
    sent = []

    def send(report):
        sent.append(report)
        if report.done == 2:
            arrived.set()

    reporter = Reporter(send, interval=0.1)
    reporter.report(Progress(1, None, '', {}))
    reporter.report(Progress(2, None, '', {}))
    assert arrived.wait(10), f'the pending report was not sent: {sent}'
    reporter.close()
    assert [report.done for report in sent] == [1, 2]


def test_reporter_retries_a_report_that_could_not_go():
    calls = []
    arrived = threading.Event()

    def send(report):
        calls.append(report.done)
        if len(calls) == 1:
            return False  # the pipe is full
        arrived.set()
        return True

    reporter = Reporter(send, interval=0.05)
    reporter.report(Progress(1, None, '', {}))
    assert arrived.wait(10)
    reporter.close()
    assert calls == [1, 1]


def test_status_shows_a_running_tasks_progress(coldoc_server, rendezvous):
    from coldoc_tasks.coldoc.fork import bind_fork_class

    f = bind_fork_class(coldoc_server.infofile)()
    f.run(jobs.report_then_rendezvous, rendezvous.address, 1, 4, 'a quarter')
    conn, _ = rendezvous.accept()
    try:
        wait_for_progress(f, lambda report: report.done == 1)
        info = status(coldoc_server.infofile)
        running = [task for task in info['tasks'] if task['id'] == f.task_id]
        assert running and running[0]['progress'] == {
            'done': 1, 'total': 4, 'message': 'a quarter', 'metadata': {'stage': 'first'}}
        assert 'progress: 1/4 (25%) a quarter' in format_status(info)
        done = run_cli('coldoc', 'status', '--json', coldoc_server.infofile)
        assert done.returncode == 0, done.stderr
        shown = {task['id']: task for task in json.loads(done.stdout)['tasks']}
        assert shown[f.task_id]['progress']['message'] == 'a quarter'
        done = run_cli('coldoc', 'status', coldoc_server.infofile)
        assert 'progress: 1/4 (25%) a quarter' in done.stdout
    finally:
        rendezvous.release(conn)
    assert f.wait(timeout=60) == 1


def _wait_in_child(data: bytes, write_fd: int) -> None:
    """In a forked child: unpickle the fork object, wait for it in a thread,
    and write the first report seen meanwhile, then the value, as JSON lines."""
    import os
    import pickle

    code = 0
    try:
        copy = pickle.loads(data)
        results = []
        waiter = threading.Thread(target=lambda: results.append(copy.wait(timeout=60)), daemon=True)
        waiter.start()
        seen = wait_for_progress(copy, lambda report: report.done == 2)
        os.write(write_fd, json.dumps(seen.as_dict()).encode() + b'\n')
        waiter.join(60)
        os.write(write_fd, json.dumps(results).encode() + b'\n')
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def test_a_copy_waiting_in_another_process_is_pushed_the_progress(coldoc_server, rendezvous):
    import os
    import pickle

    from coldoc_tasks.coldoc.fork import bind_fork_class

    f = bind_fork_class(coldoc_server.infofile)()
    f.run(jobs.report_then_rendezvous, rendezvous.address, 2, 5, 'two')
    conn, _ = rendezvous.accept()
    data = pickle.dumps(f)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _wait_in_child(data, write_fd)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, 'rb') as pipe:
            first = pipe.readline()  # bounded: the child gives up after 20 s
            assert json.loads(first or b'null') == {'done': 2, 'total': 5, 'message': 'two',
                                                    'metadata': {'stage': 'first'}}
            rendezvous.release(conn)
            assert json.loads(pipe.readline() or b'null') == [2]
    finally:
        rendezvous.close()
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert f.wait(timeout=60) == 2
    assert f.progress().message == 'finished'
