"""Durability with a journal, against real server processes killed with
SIGKILL and started again on the same infofile and journal: queued tasks
run once, uncollected results reach the waiters from before the crash,
running tasks are run again or reported lost as each asked."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import threading
import time

import pytest

from coldoc_tasks.coldoc.server.journal_file import ALLOCATE_AHEAD, FORMAT, batches, parse_header
from coldoc_tasks.coldoc.server.main import run_server
from coldoc_tasks.coldoc_tasks import bind_fork_class, status, tasks_daemon_start
from coldoc_tasks.exceptions import ColdocTasksJournalError, ColdocTasksProcessLookupError, UnsafePathError
from tests import jobs
from tests.fixtures_coldoc import ROOT
from tests.helpers_coldoc import run_python, wait_until
from tests.helpers_journal import JournalServer


@pytest.fixture
def journal_server():
    servers = []

    def make(**options) -> JournalServer:
        server = JournalServer(**options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.remove()


WAITER = '''
import json, pickle, sys
from coldoc_tasks.exceptions import ColdocTasksException
forks = pickle.loads(bytes.fromhex(sys.stdin.readline()))
print('waiting', flush=True)
results = []
for f in forks:
    try:
        results.append(['value', f.wait(timeout=120)])
    except ColdocTasksException as exc:
        results.append([type(exc).__name__, str(exc)])
print(json.dumps(results), flush=True)
'''


def start_waiter(forks):
    process = run_python(WAITER, stdin=__import__('subprocess').PIPE)
    process.stdin.write(pickle.dumps(forks).hex() + '\n')
    process.stdin.flush()
    assert process.stdout.readline() == 'waiting\n', process.stderr.read()
    return process


def waiter_results(process):
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return json.loads(out.splitlines()[-1])


def test_a_crash_loses_nothing(journal_server, tmp_path):
    server = journal_server()
    runs, release = str(tmp_path), str(tmp_path / 'release')
    F = bind_fork_class(server.infofile)
    # finished and not collected: shared with a copy that waits only after the crash
    done = F()
    done.run(jobs.record_run, runs, 'done', 'the value')
    done_copy = pickle.dumps(done)
    wait_until(lambda: status(server.infofile)['counters']['done'] == 1, 30, 'the first task to finish')
    # running at the crash: one reported lost, one run again
    lost, retried = F(), F()
    lost.run(jobs.record_run, runs, 'lost', 'never', release)
    retried.run(jobs.record_run, runs, 'retried', 'again', release, retry_on_loss=1)
    wait_until(lambda: server.runs(runs, 'lost') == 1 and server.runs(runs, 'retried') == 1, 30,
               'both blocking tasks to start')
    queued = []
    for i in range(10):
        f = F()
        f.run(jobs.record_run, runs, f'queued{i}', i)
        queued.append(f)
    waiter = start_waiter([lost, *queued[:5]])  # a process that waits across the restart
    server.kill()
    (tmp_path / 'release').touch()
    server.start()

    with pytest.raises(ColdocTasksProcessLookupError, match='stopped while the task ran.*retry_on_loss=0'):
        lost.wait(timeout=60)
    assert retried.wait(timeout=60) == 'again'
    assert [f.wait(timeout=60) for f in queued] == list(range(10))
    other = run_python('import pickle, sys; print(pickle.loads(bytes.fromhex(sys.argv[1])).wait(timeout=60))',
                       done_copy.hex())
    out, err = other.communicate(timeout=120)
    assert out.strip() == 'the value', err
    results = waiter_results(waiter)
    assert results[0][0] == 'ColdocTasksProcessLookupError'
    assert results[1:] == [['value', i] for i in range(5)]
    assert server.runs(runs, 'done') == 1 and server.runs(runs, 'lost') == 1 and server.runs(runs, 'retried') == 2
    assert [server.runs(runs, f'queued{i}') for i in range(10)] == [1] * 10
    counters = status(server.infofile)['counters']
    assert counters['lost'] == 1 and status(server.infofile)['results_held'] == 0, counters



def test_after_a_restart_a_copy_that_collects_first_leaves_the_outcome_to_the_submitter(journal_server, tmp_path):
    # A copy elsewhere waits across the crash and collects as soon as the
    # task ends; the submitter, not back on the new server yet, asks after:
    # both get the outcome, and then it is not held any more.
    server = journal_server()
    runs, release = str(tmp_path), str(tmp_path / 'release')
    F = bind_fork_class(server.infofile)
    f = F()
    f.run(jobs.record_run, runs, 'again', 'the value', release, retry_on_loss=1)
    waiter = start_waiter([f])
    wait_until(lambda: server.runs(runs, 'again') == 1, 30, 'the task to start')
    server.kill()
    server.start()
    (tmp_path / 'release').touch()
    assert waiter_results(waiter) == [['value', 'the value']]
    assert f.wait(timeout=60) == 'the value'
    assert server.runs(runs, 'again') == 2
    wait_until(lambda: status(server.infofile)['results_held'] == 0, 30, 'the outcome to be let go',
               explain=lambda: str(status(server.infofile)['results_held']))


def test_a_task_lost_at_more_restarts_than_it_asked_to_be_run_again_is_reported_lost(journal_server, tmp_path):
    server = journal_server()
    runs, never = str(tmp_path), str(tmp_path / 'never')
    f = bind_fork_class(server.infofile)()
    f.run(jobs.record_run, runs, 'twice', 'never returned', never, retry_on_loss=1)
    for ran in (1, 2):
        wait_until(lambda ran=ran: server.runs(runs, 'twice') == ran, 30, f'run {ran} to start')
        server.kill()
        server.start()
    with pytest.raises(ColdocTasksProcessLookupError,
                       match='stopped while the task ran, after it had been run again 1 time, as many as it asked '
                             r'\(retry_on_loss=1\)'):
        f.wait(timeout=60)
    assert server.runs(runs, 'twice') == 2

@pytest.mark.parametrize('journal', [False, True])
def test_retry_on_loss_runs_a_task_again_when_its_worker_is_killed(journal_server, make_server, tmp_path, journal):
    server = journal_server() if journal else make_server()
    runs = str(tmp_path)
    F = bind_fork_class(server.infofile)
    again, once = F(), F()
    again.run(jobs.record_run_block_first, runs, 'again', 'second run', retry_on_loss=1)
    once.run(jobs.record_run_block_first, runs, 'once', 'never')
    for name in ('again', 'once'):
        path = os.path.join(runs, name)
        wait_until(lambda path=path: os.path.exists(path) and open(path).read().endswith('\n'), 30,
                   f'{name} to start')
        with open(path) as stream:
            os.kill(int(stream.readline()), signal.SIGKILL)
    assert again.wait(timeout=60) == 'second run'
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGKILL'):
        once.wait(timeout=60)
    with open(os.path.join(runs, 'again')) as stream:
        assert len(stream.readlines()) == 2
    counters = status(server.infofile)['counters']
    assert counters['retried_on_loss'] == 1 and counters['lost'] == 1, counters


def test_stop_keeps_the_queue_for_the_next_start(journal_server, tmp_path):
    server = journal_server(queues=('default:1:reuse',))
    runs, release = str(tmp_path), str(tmp_path / 'release')
    F = bind_fork_class(server.infofile)
    blocker = F()
    blocker.run(jobs.record_run, runs, 'blocker', 'ok', release)
    wait_until(lambda: server.runs(runs, 'blocker') == 1, 30, 'the blocker to start')
    queued = [F() for _ in range(3)]
    for i, f in enumerate(queued):
        f.run(jobs.record_run, runs, f'kept{i}', i)

    def release_once_stopping():  # the running task ends within the grace
        wait_until(lambda: 'running tasks get' in server.log_tail(), 30, 'the server to start stopping')
        (tmp_path / 'release').touch()

    releaser = threading.Thread(target=release_once_stopping)
    releaser.start()
    server.stop(grace=30)  # the default with a journal: keep
    releaser.join()
    assert [server.runs(runs, f'kept{i}') for i in range(3)] == [0, 0, 0]
    server.start()
    assert blocker.wait(timeout=60) == 'ok'
    assert [f.wait(timeout=60) for f in queued] == [0, 1, 2]
    assert [server.runs(runs, f'kept{i}') for i in range(3)] == [1, 1, 1]


def test_stop_drains_the_queue_when_asked(journal_server, tmp_path):
    server = journal_server(queues=('default:1:reuse',), stop_queued='drain')
    runs = str(tmp_path)
    F = bind_fork_class(server.infofile)
    forks = [F() for _ in range(4)]
    for i, f in enumerate(forks):
        f.run(jobs.record_run, runs, f'drained{i}', i)
    server.stop(grace=30)  # counted from when the queue is empty
    assert [server.runs(runs, f'drained{i}') for i in range(4)] == [1] * 4
    assert [f.wait(timeout=30) for f in forks] == [0, 1, 2, 3]


# -- journals refused --------------------------------------------------------------------


def refused(tmp_path, journal, match):
    infofile = str(tmp_path / 'info')
    with pytest.raises((ColdocTasksJournalError, UnsafePathError), match=match):
        run_server(infofile, journal=journal)
    assert not os.path.exists(infofile)


def test_a_foreign_file_is_refused_and_left_alone(tmp_path):
    journal = tmp_path / 'journal'
    journal.write_bytes(b'my notes\n')
    refused(tmp_path, journal, 'not a journal of coldoc_tasks')
    assert journal.read_bytes() == b'my notes\n'


def test_a_link_is_refused(tmp_path):
    target = tmp_path / 'target'
    target.write_bytes(b'x')
    (tmp_path / 'journal').symlink_to(target)
    refused(tmp_path, tmp_path / 'journal', 'symbolic link')
    assert target.read_bytes() == b'x'


def make_journal(tmp_path, make_server) -> str:
    """A journal with a few records: a server with it ran tasks and stopped."""
    server = make_server(journal=str(tmp_path / 'journal'))
    F = bind_fork_class(server.infofile)
    forks = [F() for _ in range(3)]
    for f in forks:
        f.run(jobs.add, 1, 2)
    pickle.dumps(forks[0])
    assert [f.wait(timeout=30) for f in forks] == [3, 3, 3]
    from coldoc_tasks.coldoc_tasks import shutdown
    shutdown(server.infofile, timeout=30)
    wait_until(lambda: not os.path.exists(f'/proc/{server.pid}'), 30, 'the server to stop')
    return str(tmp_path / 'journal')


def test_a_corrupt_journal_is_refused(tmp_path, make_server):
    journal = make_journal(tmp_path, make_server)
    data = bytearray(open(journal, 'rb').read())
    start = data.index(b'\n', data.index(b'\n') + 1) + 1
    data[start + 14] ^= 0xFF  # in the first batch, which others follow
    data += data[start:]  # and another whole batch after it
    with open(journal, 'wb') as stream:
        stream.write(data)
    refused(tmp_path, journal, 'is corrupt: a batch fails its checksum')
    assert open(journal, 'rb').read() == data


def test_a_journal_of_another_format_is_refused(tmp_path, make_server):
    journal = make_journal(tmp_path, make_server)
    data = open(journal, 'rb').read().replace(b'"format": %d' % FORMAT, b'"format": 99', 1)
    with open(journal, 'wb') as stream:
        stream.write(data)
    refused(tmp_path, journal, 'of format 99 .*reads format 1 or 2 only')



def test_a_journal_of_the_earlier_format_is_read(tmp_path, make_server):
    journal = make_journal(tmp_path, make_server)
    data = open(journal, 'rb').read().replace(b'"format": %d' % FORMAT, b'"format": 1', 1)
    with open(journal, 'wb') as stream:
        stream.write(data)
    server = make_server(journal=journal)
    f = bind_fork_class(server.infofile)()
    f.run(jobs.add, 2, 3)
    assert f.wait(timeout=30) == 5

def test_a_journal_held_by_another_server_is_refused(journal_server, tmp_path):
    server = journal_server()
    refused(tmp_path, server.journal, 'locked by another server')


def test_a_torn_last_batch_is_cut_off(tmp_path, make_server):
    journal = make_journal(tmp_path, make_server)
    whole = open(journal, 'rb').read()
    with open(journal, 'ab') as stream:
        stream.write(b'\x42\x4a\x54\x43\xff\x00\x00\x00')  # a batch header whose payload never came
    server = make_server(journal=journal)
    f = bind_fork_class(server.infofile)()
    f.run(jobs.add, 2, 2)
    assert f.wait(timeout=30) == 4
    assert open(journal, 'rb').read().startswith(whole)
    with open(server.logfile) as stream:
        assert 'cut off 8 bytes of a batch torn by a crash' in stream.read()



def _batches_end(path: str) -> tuple[bytes, int]:
    """The journal's bytes, and where its whole batches end."""
    data = open(path, 'rb').read()
    end = parse_header(path, data)[1]
    for batch in batches(path, data, end):
        end = batch[2]
    return data, end


def test_the_file_is_allocated_ahead_and_its_zeros_end_it(journal_server, tmp_path):
    server = journal_server()
    runs, release = str(tmp_path), str(tmp_path / 'release')
    F = bind_fork_class(server.infofile)
    queued = [F() for _ in range(4)]
    for i, f in enumerate(queued):
        f.run(jobs.record_run, runs, f'task{i}', i, release)
    wait_until(lambda: server.runs(runs, 'task0') + server.runs(runs, 'task1') == 2, 30, 'two tasks to start')
    server.kill()
    data, end = _batches_end(server.journal)
    assert end < len(data) <= end + ALLOCATE_AHEAD + 4096 and not data[end:].strip(b'\0')
    # a batch torn by the crash, in the zeros allocated ahead: cut off, and the rest is read
    with open(server.journal, 'r+b') as stream:
        stream.seek(end)
        stream.write(b'\x42\x4a\x54\x43\x00\x01\x00\x00\x01\x02\x03\x04partial')
    (tmp_path / 'release').touch()
    server.start()
    assert [f.wait(timeout=60) for f in queued[2:]] == [2, 3]
    assert f'cut off {len(data) - end} bytes of a batch torn by a crash' in server.log_tail(200)
    from coldoc_tasks.coldoc_tasks import shutdown
    shutdown(server.infofile, timeout=30)
    wait_until(lambda: not os.path.exists(f'/proc/{server.pid}'), 30, 'the server to stop')
    data, end = _batches_end(server.journal)
    assert end == len(data)  # closed in order: no zeros ahead


def test_zeros_allocated_ahead_are_not_taken_for_a_torn_batch(journal_server, tmp_path):
    server = journal_server()
    F = bind_fork_class(server.infofile)
    f = F()
    f.run(jobs.add, 1, 2)
    kept = pickle.dumps(f)  # kept for the copy, not collected
    wait_until(lambda: status(server.infofile)['counters']['done'] == 1, 30, 'the task to finish')
    server.kill()
    data, end = _batches_end(server.journal)
    assert end < len(data)
    server.start()
    assert pickle.loads(kept).wait(timeout=60) == 3
    assert 'cut off' not in server.log_tail(200)

def test_without_a_journal_nothing_is_written(tmp_path):
    directory = tmp_path / 'd'
    directory.mkdir()
    infofile = str(directory / 'info')
    tasks_daemon_start(infofile, pythonpath=[str(ROOT)], timeout=60)
    try:
        before = sorted(os.listdir(directory))
        F = bind_fork_class(infofile)
        forks = [F() for _ in range(20)]
        for f in forks:
            f.run(jobs.add, 1, 1)
        pickle.dumps(forks[0])
        assert [f.wait(timeout=30) for f in forks] == [2] * 20
        assert sorted(os.listdir(directory)) == before == ['info', 'info.lock']
        pid = status(infofile)['pid']
        files = set()
        for fd in os.listdir(f'/proc/{pid}/fd'):
            with contextlib.suppress(FileNotFoundError):  # (a socket of a client just gone)
                files.add(os.readlink(f'/proc/{pid}/fd/{fd}'))
        assert {name for name in files if name.startswith('/')} == {'/dev/null', infofile + '.lock'}, files
        assert status(infofile)['journal'] is None
    finally:
        from coldoc_tasks.coldoc_tasks import shutdown
        shutdown(infofile, timeout=30)


def test_compaction_keeps_what_is_alive(journal_server, tmp_path):
    server = journal_server()
    F = bind_fork_class(server.infofile)
    kept = []
    for i in range(3):  # results held for copies, never collected before the crash
        f = F()
        f.run(jobs.identity, f'kept{i}')
        kept.append(pickle.dumps(f))
    payload = 'x' * 100_000
    for _ in range(4):  # collected: their records, a megabyte and more, are dead
        forks = [F() for _ in range(5)]
        for f in forks:
            f.run(jobs.identity, payload)
        assert [len(f.wait(timeout=60)) for f in forks] == [100_000] * 5
    wait_until(lambda: 'compacted from' in server.log_tail(200), 30, 'a compaction',
               explain=lambda: f'journal of {os.path.getsize(server.journal)} bytes')
    assert os.path.getsize(server.journal) < (1 << 20) + ALLOCATE_AHEAD  # (zeros allocated ahead of the writes)
    server.kill()
    server.start()
    values = run_python('import pickle, sys\nfor blob in sys.argv[1:]:\n'
                        '    print(pickle.loads(bytes.fromhex(blob)).wait(timeout=60))', *[k.hex() for k in kept])
    out, err = values.communicate(timeout=120)
    assert out.split() == ['kept0', 'kept1', 'kept2'], err
    assert os.stat(server.journal).st_mode & 0o777 == 0o600


def test_the_journal_options_are_checked(tmp_path):
    from coldoc_tasks.exceptions import ColdocTasksOptionError
    from tests.test_cli import run_cli

    infofile = str(tmp_path / 'info')
    with pytest.raises(ColdocTasksOptionError, match='stop_queued=keep needs a journal'):
        run_server(infofile, stop_queued='keep')
    with pytest.raises(ColdocTasksOptionError, match='journal_sync must be one of batch, second'):
        run_server(infofile, journal=str(tmp_path / 'journal'), journal_sync='never')
    done = run_cli('coldoc', 'start', infofile, '--stop-queued', 'later')
    assert done.returncode == 2 and 'must be one of cancel, keep, drain' in done.stderr, done.stderr
    assert os.listdir(tmp_path) == []


def test_priorities_and_deferred_tasks_survive_a_crash(journal_server, tmp_path):
    server = journal_server(queues=('default:1:reuse',))
    runs, never = str(tmp_path), str(tmp_path / 'never')
    F = bind_fork_class(server.infofile)
    blocker = F()
    blocker.run(jobs.record_run, runs, 'blocker', 'ok', never)  # holds the only slot until the crash
    wait_until(lambda: server.runs(runs, 'blocker') == 1, 30, 'the blocker to start')
    order = tmp_path / 'order'
    low, high = F(priority=-5), F(priority=5)
    low.run(jobs.append_line, str(order), 'low')
    high.run(jobs.append_line, str(order), 'high')
    when = time.time() + 3
    later = F(run_after=when)
    later.run(jobs.record_time, str(tmp_path / 'later'))
    wait_until(lambda: status(server.infofile)['tasks_deferred'] == 1, 30, 'the deferred task to be held')
    server.kill()
    server.start()
    with pytest.raises(ColdocTasksProcessLookupError, match='stopped while the task ran'):
        blocker.wait(timeout=60)
    low.wait(timeout=60)
    high.wait(timeout=60)
    # queued again all at once, then started by priority, not in the order of the journal
    assert order.read_text().split() == ['high', 'low']
    assert later.wait(timeout=60) >= when
    assert server.runs(runs, 'blocker') == 1
