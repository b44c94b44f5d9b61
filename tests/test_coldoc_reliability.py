"""What a user sees when things go wrong with a coldoc server: the cases of
RELIABILITY.md, each against a real server process of its own.  Every wait
is bounded; each test ends by checking that the server still answers and
that its counters say what happened."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import struct
import threading
import time

import pytest

from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc.messages import Dropped, Status, decode
from coldoc_tasks.coldoc.protocol import FrameReader, client_handshake
from coldoc_tasks.coldoc_tasks import ColdocFork, bind_fork_class, ping, shutdown, status, tasks_daemon_autostart
from coldoc_tasks.exceptions import (
    ColdocTasksAuthenticationError,
    ColdocTasksProcessLookupError,
    ColdocTasksSerializationError,
)
from tests import jobs
from tests.helpers import wait_process_gone
from tests.helpers_coldoc import (
    assert_healthy,
    authkey_of,
    counters,
    describe_fds,
    run_python,
    server_children,
    server_fds,
    server_rss_kib,
    wait_until,
)


def fork_for(server):
    return bind_fork_class(server.infofile)


# 1
def test_worker_sigkilled_mid_task(coldoc_server, rendezvous):
    F = fork_for(coldoc_server)
    victim, bystander = F(), F()
    victim.run(jobs.rendezvous, rendezvous.address)
    bystander.run(jobs.rendezvous, rendezvous.address, 'still here')
    arrivals = [rendezvous.accept(), rendezvous.accept()]
    pids = {pid for _, (pid,) in arrivals}
    victim_pid = status(coldoc_server.infofile)['tasks'][0]['worker_pid']
    running = {t['id']: t['worker_pid'] for t in status(coldoc_server.infofile)['tasks']}
    victim_pid = running[victim.task_id]
    assert victim_pid in pids
    os.kill(victim_pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGKILL'):
        victim.wait(timeout=10)
    assert time.monotonic() - start < 1.0
    for conn, (pid,) in arrivals:
        if pid != victim_pid:
            rendezvous.release(conn)
    assert bystander.wait(timeout=10) == 'still here'
    assert victim_pid not in server_children(coldoc_server)
    assert_healthy(coldoc_server, lost=1)


# 2
def test_exit_code_and_segfault_named(coldoc_server):
    F = fork_for(coldoc_server)
    exits, crashes = F(), F()
    exits.run(jobs.exit_with, 3)
    crashes.run(jobs.segfault)
    with pytest.raises(ColdocTasksProcessLookupError, match='exited with code 3'):
        exits.wait(timeout=10)
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGSEGV'):
        crashes.wait(timeout=10)
    assert_healthy(coldoc_server, lost=2)


# 3
def test_worker_killed_while_writing_a_big_result(coldoc_server, rendezvous):
    F = fork_for(coldoc_server)
    big = F()
    big.run(jobs.rendezvous_then_big, rendezvous.address, 50 * 1024 * 1024)
    conn, (worker,) = rendezvous.accept()
    os.kill(coldoc_server.pid, signal.SIGSTOP)  # the server stops reading: the worker blocks mid-frame
    try:
        rendezvous.release(conn)

        def blocked_sending():
            with open(f'/proc/{worker}/wchan') as stream:
                return 'sock' in stream.read()  # e.g. sock_alloc_send_pskb: the socket buffer is full
        wait_until(blocked_sending, what='the worker blocked writing its result')
        os.kill(worker, signal.SIGKILL)
    finally:
        os.kill(coldoc_server.pid, signal.SIGCONT)
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGKILL'):
        big.wait(timeout=10)
    other = F()
    other.run(jobs.big_bytes, 3 * 1024 * 1024)
    assert other.wait(timeout=30) == b'x' * (3 * 1024 * 1024)
    assert_healthy(coldoc_server, lost=1)


# 4 and 5
CLIENT_WAITS = '''
import pickle, sys
from coldoc_tasks.coldoc_tasks import bind_fork_class
from tests import jobs
f = bind_fork_class(sys.argv[1])()
f.run(jobs.rendezvous, sys.argv[2])
print('submitted', flush=True)
try:
    f.wait(timeout=60)
    print('returned')
except Exception as exc:
    print(type(exc).__name__, exc)
'''


def test_server_sigkilled_while_clients_wait(make_server, rendezvous):
    server = make_server(queues=('default:5:reuse',))
    F = fork_for(server)
    before = F()
    before.run(jobs.add, 1, 1)
    assert before.wait(timeout=10) == 2
    old = read_infofile(server.infofile)
    clients = [run_python(CLIENT_WAITS, server.infofile, rendezvous.address) for _ in range(5)]
    workers = [rendezvous.accept(timeout=30)[1][0] for _ in clients]
    os.kill(server.pid, signal.SIGKILL)
    start = time.monotonic()
    outputs = [client.communicate(timeout=30)[0] for client in clients]
    assert time.monotonic() - start < 5
    for output in outputs:
        assert 'ColdocTasksProcessLookupError' in output and 'went away' in output, output
    for worker in workers:
        assert wait_process_gone(worker, timeout=5), f'orphan worker {worker}'
    # 5: the stale socket file and the dead pid in the infofile are replaced
    assert os.path.exists(old['socket'])
    pid, _ = tasks_daemon_autostart(server.infofile, pythonpath=[os.getcwd()])
    assert pid != old['pid']
    server.pid = pid
    new = read_infofile(server.infofile)
    assert (new['socket'], new['authkey']) == (old['socket'], old['authkey'])
    after = F()  # the same class, holding the old address and key: it reconnects
    after.run(jobs.add, 2, 2)
    assert after.wait(timeout=10) == 4
    assert_healthy(server, lost=0)


# 6
def test_start_against_a_live_server(coldoc_server):
    from tests.test_cli import run_cli

    done = run_cli('coldoc', 'start', coldoc_server.infofile)
    assert done.returncode != 0
    assert f'already running (pid {coldoc_server.pid})' in done.stderr
    assert_healthy(coldoc_server)


# 7
AUTOSTART = '''
import os, sys
from coldoc_tasks.coldoc_tasks import tasks_daemon_autostart, bind_fork_class
from tests import jobs
sys.stdin.readline()
pid, _ = tasks_daemon_autostart(sys.argv[1], logfile=sys.argv[1] + ".log", pythonpath=[os.getcwd()])
f = bind_fork_class(sys.argv[1])()
f.run(jobs.add, 1, 2)
print(pid, f.wait(timeout=30))
'''


def test_eight_simultaneous_autostarts_make_one_server(tmp_path):
    directory = os.path.join('/tmp', f'ct-auto-{os.getpid()}')
    os.makedirs(directory, mode=0o700, exist_ok=True)
    infofile = os.path.join(directory, 'info')
    starters = [run_python(AUTOSTART, infofile, stdin=-1) for _ in range(8)]
    try:
        for starter in starters:
            starter.stdin.write('go\n')
        for starter in starters:
            starter.stdin.flush()
        outputs = [starter.communicate(timeout=60) for starter in starters]
        assert all(starter.returncode == 0 for starter in starters), outputs
        answers = {out.split()[0] for out, _ in outputs}
        assert len(answers) == 1, outputs
        assert all(out.split()[1] == '3' for out, _ in outputs)
        pid = int(answers.pop())
        assert ping(infofile)['pid'] == pid
        processes = {p for p in os.listdir('/proc') if p.isdigit() and _is_server_of(p, infofile)}
        servers = [p for p in processes if _parent(p) not in processes]  # not its workers
        assert servers == [str(pid)]
    finally:
        shutdown(infofile, grace=0, timeout=30)
        import shutil
        shutil.rmtree(directory, ignore_errors=True)


def _parent(pid: str) -> str:
    with open(f'/proc/{pid}/stat') as stream:
        return stream.read().rsplit(')', 1)[1].split()[1]


def _is_server_of(pid: str, infofile: str) -> bool:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as stream:
            argv = stream.read().split(b'\0')
    except OSError:
        return False
    return b'coldoc_tasks.coldoc.cli' in argv and infofile.encode() in argv


# 8
def test_wrong_authkey(coldoc_server):
    address = read_infofile(coldoc_server.infofile)['socket']
    start = time.monotonic()
    with pytest.raises(ColdocTasksAuthenticationError, match='refused'):
        ColdocFork(address=address, authkey=b'not the key').run(jobs.add, 1)
    assert time.monotonic() - start < 1.0
    assert_healthy(coldoc_server, auth_failures=1)
    with open(coldoc_server.logfile) as stream:
        log = stream.read()
    assert f'pid {os.getpid()}' in log and 'wrong authentication key' in log


# 9
def test_garbage_before_authentication(coldoc_server, tmp_path):
    address = read_infofile(coldoc_server.infofile)['socket']
    witness = tmp_path / 'unpickled'

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {witness}',))

    payload = pickle.dumps(Evil())
    attempts = [os.urandom(4096), b'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
                struct.pack('!II', len(payload), 0) + payload,
                struct.pack('!II', 64, 0) + os.urandom(64)]
    for attempt in attempts:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(address)
            sock.recv(1024)  # the greeting
            sock.sendall(attempt)
            _read_until_closed(sock)
    assert not witness.exists()
    assert_healthy(coldoc_server, auth_failures=len(attempts))


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b''
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    return data


# 10
def test_oversized_frames(coldoc_server):
    address = read_infofile(coldoc_server.infofile)['socket']
    rss_before = server_rss_kib(coldoc_server)
    with socket.socket(socket.AF_UNIX) as sock:  # before authentication
        sock.settimeout(10)
        sock.connect(address)
        sock.recv(1024)
        sock.sendall(struct.pack('!II', 2**31, 2**31))
        _read_until_closed(sock)
    with socket.socket(socket.AF_UNIX) as sock:  # after authentication
        sock.settimeout(10)
        sock.connect(address)
        client_handshake(sock, authkey_of(coldoc_server), FrameReader(max_body=0))
        sock.sendall(struct.pack('!II', 100, 2**32 - 1) + b'x' * 100)
        reply = _read_until_closed(sock)
    frames = FrameReader().feed(reply)
    assert len(frames) == 1
    message = decode(frames[0][0])
    assert isinstance(message, Dropped) and 'over the limits' in message.message
    assert server_rss_kib(coldoc_server) < rss_before + 10_000
    assert_healthy(coldoc_server, protocol_errors=2)


# 11
def test_truncated_frames_and_half_open_peers(coldoc_server):
    address = read_infofile(coldoc_server.infofile)['socket']
    assert_healthy(coldoc_server)
    baseline = server_fds(coldoc_server)
    peers = []
    for i in range(50):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
        if i % 2:
            sock.sendall(struct.pack('!II', 64, 0) + b'short')  # truncated, then closed
            sock.close()
        else:
            sock.shutdown(socket.SHUT_WR)  # half-open
            peers.append(sock)
    wait_until(lambda: server_fds(coldoc_server) <= baseline + len(peers), what='the truncated peers dropped')
    for sock in peers:
        sock.close()
    wait_until(lambda: server_fds(coldoc_server) <= baseline, what=f'the descriptors back to {baseline}',
               explain=lambda: describe_fds(coldoc_server))
    assert_healthy(coldoc_server)


# 12
def test_silent_peers_are_dropped_and_others_served(make_server):
    server = make_server(handshake_timeout=1.0)
    address = read_infofile(server.infofile)['socket']
    silent = []
    for _ in range(200):
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(address)
        silent.append(sock)
    f = fork_for(server)()
    f.run(jobs.add, 3, 4)
    assert f.wait(timeout=10) == 7
    for sock in silent:
        sock.settimeout(10)
        _read_until_closed(sock)  # the server closes each after the deadline
        sock.close()
    assert_healthy(server, auth_failures=200)


# 13
def test_unpicklable_argument_is_refused_before_queueing(coldoc_server):
    f = fork_for(coldoc_server)()
    with pytest.raises(ColdocTasksSerializationError, match='function'):
        f.run(jobs.identity, lambda: 1)
    with pytest.raises(ColdocTasksSerializationError, match='lock'):
        fork_for(coldoc_server)().run(jobs.identity, threading.Lock())
    assert_healthy(coldoc_server, submitted=1)


# 14
def test_unpicklable_result_leaves_the_worker_alive(make_server):
    server = make_server(queues=('default:1:reuse',))
    F = fork_for(server)
    first = F()
    first.run(jobs.getpid)
    worker = first.wait(timeout=10)
    f = F()
    f.run(jobs.return_generator)
    with pytest.raises(ColdocTasksSerializationError, match='generator'):
        f.wait(timeout=10)
    again = F()
    again.run(jobs.getpid)
    assert again.wait(timeout=10) == worker
    assert_healthy(server, failed=1)


# 17
KILLED_CLIENT = '''
import pickle, sys
from coldoc_tasks.coldoc_tasks import bind_fork_class
from tests import jobs
f = bind_fork_class(sys.argv[1])()
f.run(jobs.rendezvous, sys.argv[2], 'survived')
with open(sys.argv[3], 'wb') as stream:
    pickle.dump(f, stream)
print('ready', flush=True)
sys.stdin.readline()
'''


def test_client_killed_while_its_task_runs(make_server, rendezvous, tmp_path):
    server = make_server(result_retention=2.0)
    assert_healthy(server)
    baseline = server_fds(server)
    pickled = tmp_path / 'fork.pickle'
    for claimed in (True, False):
        client = run_python(KILLED_CLIENT, server.infofile, rendezvous.address, str(pickled), stdin=-1)
        assert client.stdout.readline() == 'ready\n'
        conn, _ = rendezvous.accept()
        client.kill()
        client.communicate(timeout=10)
        rendezvous.release(conn)
        if claimed:
            with open(pickled, 'rb') as stream:
                assert pickle.load(stream).wait(timeout=10) == 'survived'
    wait_until(lambda: counters(server)['expired'] == 1, timeout=15, what='the unclaimed result expiring')
    wait_until(lambda: server_fds(server) <= baseline, what=f'the descriptors back to {baseline}',
               explain=lambda: describe_fds(server))
    assert_healthy(server, expired=1)


# 18
WAIT_PICKLED = '''
import pickle, sys
f = pickle.loads(bytes.fromhex(sys.argv[1]))
try:
    print(f.wait(timeout=10))
except Exception as exc:
    print(type(exc).__name__, exc)
'''


def test_second_wait_after_collection_is_a_clear_error(coldoc_server):
    f = fork_for(coldoc_server)()
    f.run(jobs.add, 1, 1)
    data = pickle.dumps(f)
    out, _ = run_python(WAIT_PICKLED, data.hex()).communicate(timeout=30)
    assert out.startswith('2')  # the first collection from elsewhere
    start = time.monotonic()
    out, _ = run_python(WAIT_PICKLED, data.hex()).communicate(timeout=30)
    assert out.startswith('ColdocTasksUnknownTaskError') and 'already collected' in out, out
    assert time.monotonic() - start < 10
    assert f.wait(timeout=10) == 2  # the submitting process had it pushed


# 20: the worker is replaced after a terminate
def test_terminated_worker_is_replaced(coldoc_server, rendezvous):
    F = fork_for(coldoc_server)
    f = F()
    f.run(jobs.rendezvous, rendezvous.address, ignore_sigterm=True, spawn_grandchild=True)
    _, (worker, grandchild) = rendezvous.accept()
    f.terminate()
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated.*SIGKILL'):
        f.wait(timeout=10)
    assert wait_process_gone(worker) and wait_process_gone(grandchild)
    assert worker not in server_children(coldoc_server)
    assert_healthy(coldoc_server, terminated=1)


# 21
def test_terminate_a_queued_task(make_server, rendezvous, tmp_path):
    server = make_server(queues=('default:1:reuse',))
    F = fork_for(server)
    blocker, queued = F(), F()
    blocker.run(jobs.rendezvous, rendezvous.address, 'done')
    conn, _ = rendezvous.accept()
    marker = tmp_path / 'ran'
    queued.run(jobs.append_line, str(marker), 'it ran')
    queued.terminate()
    with pytest.raises(ColdocTasksProcessLookupError, match='cancelled'):
        queued.wait(timeout=10)
    rendezvous.release(conn)
    assert blocker.wait(timeout=10) == 'done'
    assert_healthy(server, cancelled=1)  # the trivial task ran after it: it would have run by now
    assert not marker.exists()


# 22
def test_ten_nested_tasks_on_concurrency_one(make_server):
    server = make_server(queues=('default:1:reuse',))
    F = fork_for(server)
    f = F()
    f.run(jobs.nested, F, 10)
    assert f.wait(timeout=60) == list(range(1, 11))
    assert_healthy(server)
    assert status(server.infofile)['queues'][0]['lent_slots'] == 0


# 23
STORM = '''
import sys, threading
from coldoc_tasks.coldoc_tasks import bind_fork_class
from tests import jobs
F = bind_fork_class(sys.argv[1])
base = int(sys.argv[2])
results, errors = {}, []
def client(n):
    try:
        f = F()
        f.run(jobs.add, base, n)
        results[n] = f.wait(timeout=120)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
for t in threads: t.start()
for t in threads: t.join()
ok = all(results.get(n) == base + n for n in range(50))
print('ok' if ok and not errors else f'bad {errors[:3]} {len(results)}')
'''


def test_a_thousand_concurrent_clients(coldoc_server):
    assert_healthy(coldoc_server)
    baseline = server_fds(coldoc_server)
    storm = [run_python(STORM, coldoc_server.infofile, str(1000 * i)) for i in range(20)]
    slowest_ping = 0.0
    while any(p.poll() is None for p in storm):
        start = time.monotonic()
        assert ping(coldoc_server.infofile, timeout=5) is not None
        slowest_ping = max(slowest_ping, time.monotonic() - start)
    outputs = [p.communicate(timeout=120) for p in storm]
    assert all(out.strip() == 'ok' for out, _ in outputs), outputs
    assert slowest_ping < 1.0
    wait_until(lambda: server_fds(coldoc_server) <= baseline, what=f'the descriptors back to {baseline}',
               explain=lambda: describe_fds(coldoc_server))
    assert_healthy(coldoc_server, failed=0, lost=0)


# 24
def test_a_hundred_thousand_queued_tasks(make_server, tmp_path):
    server = make_server(queues=('default:2:reuse',))
    F = fork_for(server)
    assert_healthy(server)
    gate = tmp_path / 'gate'
    os.mkfifo(gate)
    blockers = [F(), F()]
    for blocker in blockers:  # hold both slots so everything else queues
        blocker.run(jobs.read_fifo, str(gate))
    rss_before = server_rss_kib(server)
    forks = [F() for _ in range(100_000)]
    for i, f in enumerate(forks):
        f.run(jobs.identity, i)
    wait_until(lambda: status(server.infofile)['tasks_queued'] == 100_000, timeout=60,
               what='all tasks queued')
    per_task = (server_rss_kib(server) - rss_before) * 1024 / 100_000
    assert per_task < 2048, f'{per_task:.0f} bytes per queued task'
    start = time.monotonic()
    assert ping(server.infofile, timeout=5) is not None
    assert status(server.infofile)['tasks_queued'] == 100_000
    assert time.monotonic() - start < 0.5
    with open(gate, 'w') as stream:  # release both blockers
        stream.write('go\n')
    assert [f.wait(timeout=300) for f in forks] == list(range(100_000))
    for blocker in blockers:
        blocker.wait(timeout=30)
    print(f'memory per queued task: {per_task:.0f} bytes')
    assert_healthy(server, lost=0)


# 24, FIFO order
def test_fifo_order(make_server, tmp_path):
    server = make_server(queues=('default:1:reuse',))
    F = fork_for(server)
    journal = tmp_path / 'journal'
    forks = [F() for _ in range(500)]
    for i, f in enumerate(forks):
        f.run(jobs.append_line, str(journal), i)
    for f in forks:
        f.wait(timeout=60)
    assert journal.read_text().split() == [str(i) for i in range(500)]
    assert_healthy(server)


# 25
def test_recycling_under_load_loses_nothing(make_server):
    server = make_server(queues=('default:2:reuse:5',))
    F = fork_for(server)
    forks = [F() for _ in range(300)]
    for f in forks:
        f.run(jobs.getpid)
    pids = [f.wait(timeout=60) for f in forks]
    assert max(pids.count(pid) for pid in set(pids)) <= 5
    assert len(set(pids)) >= 60
    assert_healthy(server, done=301, lost=0)


def test_stop_lets_running_tasks_finish_and_tells_waiters(make_server, rendezvous):
    server = make_server(queues=('default:2:reuse',))
    F = fork_for(server)
    running = [F(), F()]
    for f in running:
        f.run(jobs.rendezvous, rendezvous.address, 'finished')
    arrivals = [rendezvous.accept(), rendezvous.accept()]
    queued = F()
    queued.run(jobs.add, 1, 1)
    info = read_infofile(server.infofile)
    stopper = threading.Thread(target=shutdown, args=(server.infofile,), kwargs={'grace': 30, 'timeout': 60})
    stopper.start()
    with pytest.raises(ColdocTasksProcessLookupError, match='server stopped'):
        queued.wait(timeout=10)
    assert ping(server.infofile) is None or status(server.infofile)['stopping']
    late = F()  # on the connection already open
    late.run(jobs.add, 2, 2)
    with pytest.raises(ColdocTasksProcessLookupError, match='refused: the server is stopping'):
        late.wait(timeout=10)
    for conn, _ in arrivals:
        rendezvous.release(conn)
    assert [f.wait(timeout=10) for f in running] == ['finished', 'finished']
    stopper.join(timeout=60)
    assert not stopper.is_alive()
    assert wait_process_gone(server.pid)
    assert not os.path.exists(info['socket'])
    assert not os.path.exists(server.infofile + '.lock')


def test_stop_terminates_tasks_that_outlive_the_grace(make_server, rendezvous):
    server = make_server(queues=('default:2:reuse',))
    f = fork_for(server)()
    f.run(jobs.rendezvous, rendezvous.address)
    rendezvous.accept()
    start = time.monotonic()
    assert shutdown(server.infofile, grace=0.5, timeout=30)
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        f.wait(timeout=10)
    assert time.monotonic() - start < 5


# 26
def test_no_secret_in_logs_or_status_and_private_files(coldoc_server):
    from tests.test_cli import run_cli

    key = authkey_of(coldoc_server)
    done = run_cli('coldoc', 'status', '--json', coldoc_server.infofile)
    assert done.returncode == 0
    plain = run_cli('coldoc', 'status', coldoc_server.infofile)
    with open(coldoc_server.logfile, 'rb') as stream:
        log = stream.read()
    for text in (done.stdout.encode(), plain.stdout.encode(), log):
        assert key not in text and key.hex().encode() not in text
    info = read_infofile(coldoc_server.infofile)
    assert os.stat(coldoc_server.infofile).st_mode & 0o777 == 0o600
    assert os.stat(info['socket']).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(info['socket'])).st_mode & 0o777 == 0o700
    assert_healthy(coldoc_server)


def connection_is_own(infofile):
    """In a forked child: run a coldoc task and say whether the connection
    used belongs to this process."""
    from coldoc_tasks import client

    f = bind_fork_class(infofile)()
    f.run(jobs.add, 1, 1)
    assert f.wait(timeout=10) == 2
    return [connection.pid == os.getpid() for connection in client._connections.values()]


def test_one_connection_per_process_and_none_per_task(coldoc_server, monkeypatch):
    import coldoc_tasks.coldoc.fork as module
    from coldoc_tasks.simple_tasks import SimpleFork

    F = fork_for(coldoc_server)
    warm = F()
    warm.run(jobs.add, 0)
    warm.wait(timeout=10)
    before = counters(coldoc_server)['connections']
    reads = []
    monkeypatch.setattr(module, 'read_infofile', lambda path: reads.append(path) or read_infofile(path))
    forks = [F() for _ in range(200)]
    for i, f in enumerate(forks):
        f.run(jobs.add, i, 1)
    assert [f.wait(timeout=30) for f in forks] == list(range(1, 201))
    assert reads == []  # the infofile is read once per process, not per task
    assert counters(coldoc_server)['connections'] == before + 1  # + the status request itself
    # a forked child makes its own connection, never its parent's
    child = SimpleFork()
    child.run(connection_is_own, coldoc_server.infofile)
    assert child.wait(timeout=30) == [True]
    assert_healthy(coldoc_server)


def test_stop_delivers_a_big_result_that_ends_within_the_grace(make_server, rendezvous):
    server = make_server()
    f = fork_for(server)()
    f.run(jobs.rendezvous_then_big, rendezvous.address, 20 * 1024 * 1024)
    conn, _ = rendezvous.accept()
    stopper = threading.Thread(target=shutdown, args=(server.infofile,), kwargs={'grace': 30, 'timeout': 60})
    stopper.start()
    wait_until(lambda: ping(server.infofile) is None, what='the server no longer accepting')
    rendezvous.release(conn)
    assert f.wait(timeout=30) == b'y' * (20 * 1024 * 1024)
    stopper.join(timeout=60)
    assert wait_process_gone(server.pid)


def inherit_and_wait(fork_object, fork_backend):
    """Fork (not pickle) a process that waits on ``fork_object``; return
    what it saw."""
    child = fork_backend()
    child.run(_wait_inherited, fork_object)
    return child.wait(timeout=30)


def _wait_inherited(fork_object):
    try:
        return fork_object.wait(timeout=10)
    except Exception as exc:
        return f'{type(exc).__name__}: {exc}'


def test_a_fork_object_inherited_through_fork(coldoc_server):
    from coldoc_tasks.simple_tasks import SimpleFork

    f = fork_for(coldoc_server)()
    f.run(jobs.add, 20, 22)
    seen = inherit_and_wait(f, SimpleFork)  # never a hang: the value, or a clear error
    assert seen == 42 or ('ColdocTasksUnknownTaskError' in seen and 'already collected' in seen), seen
    assert f.wait(timeout=10) == 42
    s = SimpleFork()
    s.run(jobs.add, 1, 2)
    seen = inherit_and_wait(s, SimpleFork)
    assert 'only from the process that ran it' in seen
    assert s.wait(timeout=10) == 3


def test_terminate_after_the_outcome_arrived_changes_nothing(coldoc_server):
    f = fork_for(coldoc_server)()
    f.run(jobs.add, 1, 2)
    wait_until(lambda: f._push.message is not None, what='the outcome pushed')
    f.terminate()
    assert f.wait(timeout=10) == 3


@pytest.mark.parametrize('grace', [float('inf'), float('nan'), -1, 'soon'])
def test_a_bad_stop_grace_is_refused(coldoc_server, grace):
    from coldoc_tasks.exceptions import ColdocTasksUsageError

    with pytest.raises(ColdocTasksUsageError, match='grace'):
        shutdown(coldoc_server.infofile, grace=grace, timeout=10)
    assert_healthy(coldoc_server)


def test_out_of_descriptors_the_server_rests_and_recovers(coldoc_server):
    import resource

    assert_healthy(coldoc_server)
    address = read_infofile(coldoc_server.infofile)['socket']
    soft, hard = resource.prlimit(coldoc_server.pid, resource.RLIMIT_NOFILE)
    limit = len(os.listdir(f'/proc/{coldoc_server.pid}/fd')) + 3
    resource.prlimit(coldoc_server.pid, resource.RLIMIT_NOFILE, (limit, hard))
    try:
        peers = []
        for _ in range(20):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(address)  # the kernel queues them even when the server cannot accept
            peers.append(sock)
        assert ping(coldoc_server.infofile, timeout=1.0) is None  # no descriptor left for it either
        with open(coldoc_server.logfile) as stream:
            complaints = stream.read().count('cannot accept connections')
        assert 1 <= complaints <= 20, f'{complaints} complaints in about a second: the loop spins'
        for sock in peers:
            sock.close()
    finally:
        resource.prlimit(coldoc_server.pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert_healthy(coldoc_server)


def test_a_peer_that_does_not_read_cannot_swell_the_server(coldoc_server):
    assert_healthy(coldoc_server)
    address = read_infofile(coldoc_server.infofile)['socket']
    rss_before = server_rss_kib(coldoc_server)
    request = b''.join(Status(1).encode())
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(address)
        client_handshake(sock, authkey_of(coldoc_server), FrameReader(max_body=0))
        sock.setblocking(False)
        batch = request * 1000
        deadline = time.monotonic() + 60
        blocked_since = None
        while time.monotonic() < deadline:  # send until the server stops reading us
            try:
                sock.send(batch)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break
                select_wait(sock)
        assert blocked_since is not None, 'the server kept reading a peer that reads nothing'
        grown = (server_rss_kib(coldoc_server) - rss_before) // 1024
        assert grown < 200, f'the server grew by {grown} MB'
        assert ping(coldoc_server.infofile, timeout=5) is not None
    assert_healthy(coldoc_server)


def select_wait(sock, timeout=0.2):
    import select

    select.select([], [sock], [], timeout)
