"""Upgrading from coldoc_tasks 0.2: its infofile is recognised; its server,
while it answers, is never replaced by a second one, and ``stop`` stops it;
a dead one's infofile is replaced by a fresh one of ours.

"Live" is a stand-in 0.2 server (``tests/legacy_server.py``) in a process of
its own; "dead" is a 0.2 infofile whose server is gone, leaving its socket.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

from coldoc_tasks.coldoc.daemon import ColdocTasksStartError
from coldoc_tasks.coldoc.infofile import InfofileError, LegacyInfofileError, read_infofile
from coldoc_tasks.coldoc.legacy import legacy_server_answers, parse_legacy, read_legacy_infofile
from coldoc_tasks.coldoc_tasks import ping, shutdown, tasks_daemon_autostart
from tests.fixtures_coldoc import ROOT
from tests.helpers import wait_process_gone
from tests.legacy_server import legacy_infofile_text
from tests.test_cli import run_cli


@pytest.fixture
def workdir():
    directory = tempfile.mkdtemp(prefix='ct-legacy-')
    yield directory
    infofile = os.path.join(directory, 'info')
    with contextlib.suppress(InfofileError):
        pid = read_infofile(infofile)['pid']  # a server of ours was started: stop it
        shutdown(infofile, grace=0, timeout=15)
        wait_process_gone(pid)
    shutil.rmtree(directory, ignore_errors=True)


class LegacyServer:
    """A stand-in 0.2 server serving ``infofile``, stopped at the end."""

    def __init__(self, directory: str, *options: str):
        self.infofile = os.path.join(directory, 'info')
        self.process = subprocess.Popen([sys.executable, '-m', 'tests.legacy_server', self.infofile, directory,
                                         *options], stdout=subprocess.PIPE, text=True, cwd=str(ROOT),
                                        env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert self.process.stdout.readline() == 'ready\n', 'the stand-in 0.2 server did not start'
        self.pid = self.process.pid

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def legacy_server(workdir):
    server = LegacyServer(workdir)
    yield server
    server.close()


@pytest.fixture
def dead_legacy_infofile(workdir):
    """A 0.2 infofile whose server died, leaving its socket behind."""
    address = os.path.join(workdir, 'manager_socket_old')
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(address)
    sock.close()
    gone = subprocess.Popen([sys.executable, '-c', 'pass'])
    gone.wait()
    infofile = os.path.join(workdir, 'info')
    with open(infofile, 'w', encoding='utf-8') as stream:
        stream.write(legacy_infofile_text(address, b'old key 0.2', gone.pid, workdir))
    return infofile


# -- reading -------------------------------------------------------------------------------


def test_read_a_legacy_infofile(workdir):
    infofile = os.path.join(workdir, 'info')
    with open(infofile, 'w') as stream:
        stream.write(legacy_infofile_text('/tmp/x/manager_socket_a', b'\x00key\xff', 4321, '/tmp/x'))
    info = read_legacy_infofile(infofile)
    assert info['address'] == '/tmp/x/manager_socket_a'
    assert info['authkey'] == b'\x00key\xff'
    assert info['pid'] == 4321
    assert info['tempdir'] == '/tmp/x' and info['logfile'] is None
    assert info['pythonpath'] == '/tmp/x' and info['with_django'] is False
    with pytest.raises(LegacyInfofileError, match='infofile of coldoc_tasks 0.2') as raised:
        read_infofile(infofile)
    assert raised.value.info['authkey'] == b'\x00key\xff'


def test_every_modifier_of_0_2():
    text = ('# comment\n\naddress=/s\nauthkey/64=' + base64.b64encode(b'k').decode() + '\n'
            'pid/r=None\nf/f=1.5\ni/i=7\nr/r=True\nq/r=\'quoted\'\n'
            'z/64s=' + base64.b64encode('é'.encode()).decode() + '\nb/b=abc\n')
    info = parse_legacy(text)
    assert info == {'address': '/s', 'authkey': b'k', 'pid': None, 'f': 1.5, 'i': 7, 'r': True, 'q': 'quoted',
                    'z': 'é', 'b': b'abc'}


def test_a_pickled_value_is_never_loaded(tmp_path):
    witness = tmp_path / 'witness'

    class Plant:
        def __reduce__(self):
            return (open, (str(witness), 'w'))

    payload = base64.b64encode(pickle.dumps(Plant())).decode()
    info = parse_legacy(f'address=/s\nauthkey/32=MFRGG===\nevil/64p={payload}\n')
    assert 'evil' not in info and not witness.exists()


@pytest.mark.parametrize('text', ['notes\n', 'address=/s\n', 'address=/s\nauthkey/i=x\n', '{"socket": 1}',
                                  'address=/s\nauthkey/32=MFRGG===\npid/i=-3\n'])
def test_what_is_not_a_legacy_infofile(text):
    with pytest.raises(ValueError):
        parse_legacy(text)


# -- a live 0.2 server ------------------------------------------------------------------------


def test_a_live_legacy_server_answers(legacy_server):
    assert legacy_server_answers(read_legacy_infofile(legacy_server.infofile)) == legacy_server.pid
    wrong = dict(read_legacy_infofile(legacy_server.infofile), authkey=b'wrong')
    assert legacy_server_answers(wrong, timeout=5) is None


def test_a_stopped_legacy_server_does_not_hang_us(legacy_server):
    info = read_legacy_infofile(legacy_server.infofile)
    os.kill(legacy_server.pid, signal.SIGSTOP)
    try:
        import time

        started = time.monotonic()
        assert legacy_server_answers(info, timeout=1) is None
        assert time.monotonic() - started < 3
    finally:
        os.kill(legacy_server.pid, signal.SIGCONT)


@pytest.mark.parametrize('how', ['daemon', 'autostart'])
def test_no_second_server_over_a_live_legacy_one(legacy_server, how):
    with open(legacy_server.infofile, 'rb') as stream:
        before = stream.read()
    if how == 'daemon':
        done = run_cli('coldoc', 'daemon', legacy_server.infofile)
        assert done.returncode == 1
        message = done.stderr
    else:
        failed, error = tasks_daemon_autostart(legacy_server.infofile)  # 0.2's return: (False, the error)
        assert failed is False and isinstance(error, ColdocTasksStartError)
        message = str(error)
    assert f'an old coldoc_tasks 0.2 server (pid {legacy_server.pid}) still serves {legacy_server.infofile}' \
        in message, message
    assert 'coldoc_tasks_cli coldoc stop' in message
    with open(legacy_server.infofile, 'rb') as stream:
        assert stream.read() == before
    assert legacy_server.process.poll() is None
    assert legacy_server_answers(read_legacy_infofile(legacy_server.infofile)) == legacy_server.pid


def test_ping_and_status_say_it_is_a_legacy_infofile(legacy_server):
    for command in ('ping', 'status'):
        done = run_cli('coldoc', command, legacy_server.infofile)
        assert done.returncode == 1
        assert 'infofile of coldoc_tasks 0.2' in done.stderr, done.stderr
        assert f'its coldoc_tasks 0.2 server (pid {legacy_server.pid}) answers' in done.stderr, done.stderr


def test_stop_a_live_legacy_server(legacy_server):
    done = run_cli('coldoc', 'stop', legacy_server.infofile)
    assert done.returncode == 0, done.stderr
    assert f'coldoc_tasks 0.2 server (pid {legacy_server.pid}) stopped' in done.stdout
    assert legacy_server.process.wait(timeout=10) == 0


def test_stop_a_legacy_server_that_ignores_shutdown(workdir):
    server = LegacyServer(workdir, '--ignore-shutdown')
    try:
        done = run_cli('coldoc', 'stop', '--grace', '1', server.infofile)
        assert done.returncode == 0, done.stderr
        assert f'coldoc_tasks 0.2 server (pid {server.pid})' in done.stdout and 'SIGTERM' in done.stdout
        assert server.process.wait(timeout=10) == -signal.SIGTERM
    finally:
        server.close()


def test_upgrade_after_stopping_the_legacy_server(legacy_server):
    old = read_legacy_infofile(legacy_server.infofile)
    assert run_cli('coldoc', 'stop', legacy_server.infofile).returncode == 0
    done = run_cli('coldoc', 'daemon', legacy_server.infofile)
    assert done.returncode == 0, done.stderr
    new = read_infofile(legacy_server.infofile)
    assert new['socket'] != old['address'] and new['authkey'] != old['authkey']


# -- a dead 0.2 server --------------------------------------------------------------------------


def test_a_dead_legacy_server_is_replaced_with_nothing_kept(dead_legacy_infofile):
    old = read_legacy_infofile(dead_legacy_infofile)
    assert legacy_server_answers(old) is None
    done = run_cli('coldoc', 'ping', dead_legacy_infofile)
    assert done.returncode == 1 and 'no 0.2 server answers' in done.stderr, done.stderr
    done = run_cli('coldoc', 'stop', dead_legacy_infofile)
    assert done.returncode == 1 and 'no coldoc_tasks 0.2 server answers' in done.stderr, done.stderr

    pid, _ = tasks_daemon_autostart(dead_legacy_infofile)
    new = read_infofile(dead_legacy_infofile)
    assert new['pid'] == pid and ping(dead_legacy_infofile)['pid'] == pid
    assert new['socket'] != old['address'] and new['authkey'] != old['authkey']
    directory = os.path.dirname(new['socket'])
    assert os.stat(directory).st_mode & 0o777 == 0o700 and directory != os.path.dirname(old['address'])
    assert os.stat(dead_legacy_infofile).st_mode & 0o777 == 0o600
    assert os.path.exists(old['address'])  # 0.2's socket is not ours to remove
