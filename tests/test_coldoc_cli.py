"""``coldoc_tasks_cli coldoc ...``, run as users run it, against real servers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile

import pytest

from coldoc_tasks.coldoc.infofile import read_infofile
from tests.fixtures_coldoc import ROOT
from tests.helpers import wait_process_gone
from tests.test_cli import CLI, run_cli


@pytest.fixture
def workdir():
    directory = tempfile.mkdtemp(prefix='ct-cli-')
    yield directory
    infofile = os.path.join(directory, 'info')
    if os.path.exists(infofile):
        run_cli('coldoc', 'stop', '--grace', '0', infofile)
    shutil.rmtree(directory, ignore_errors=True)


def cli_env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def test_daemon_ping_pid_status_test_stop(workdir):
    infofile = os.path.join(workdir, 'info')
    logfile = os.path.join(workdir, 'log')
    done = run_cli('coldoc', 'daemon', infofile, '--logfile', logfile, '--concurrency', '2',
                   '--queue', 'pdf:1:fresh')
    assert done.returncode == 0, done.stderr
    info = read_infofile(infofile)
    assert f'started (pid {info["pid"]})' in done.stdout
    # a fresh socket in a private directory, a random key
    assert os.stat(os.path.dirname(info['socket'])).st_mode & 0o777 == 0o700
    assert len(info['authkey']) >= 16
    assert os.stat(infofile).st_mode & 0o777 == 0o600

    done = run_cli('coldoc', 'ping', infofile)
    assert done.returncode == 0 and f'pong from pid {info["pid"]}' in done.stdout
    done = run_cli('coldoc', 'pid', infofile)
    assert done.returncode == 0 and done.stdout.strip() == str(info['pid'])

    done = run_cli('coldoc', 'test', infofile, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '0 failure(s)' in done.stdout and 'FAIL' not in done.stdout

    done = run_cli('coldoc', 'status', '--json', infofile)
    assert done.returncode == 0
    state = json.loads(done.stdout)
    assert state['pid'] == info['pid'] and state['uptime'] > 0
    queues = {q['name']: q for q in state['queues']}
    assert queues['default']['concurrency'] == 2 and queues['pdf']['mode'] == 'fresh'
    assert state['counters']['done'] >= 100 and state['counters']['lost'] == 1
    for name in ('done', 'failed', 'terminated', 'lost', 'expired'):
        assert name in state['counters']
    done = run_cli('coldoc', 'status', infofile)
    assert done.returncode == 0
    assert 'queue' in done.stdout and 'pdf' in done.stdout and 'counters:' in done.stdout

    done = run_cli('coldoc', 'stop', infofile)
    assert done.returncode == 0 and 'stopped' in done.stdout
    assert wait_process_gone(info['pid'])
    assert not os.path.exists(info['socket'])
    for command in ('ping', 'pid', 'status', 'stop'):
        done = run_cli('coldoc', command, infofile)
        assert done.returncode == 1, (command, done.stdout, done.stderr)


def test_restart_reuses_socket_and_key(workdir):
    infofile = os.path.join(workdir, 'info')
    assert run_cli('coldoc', 'daemon', infofile).returncode == 0
    first = read_infofile(infofile)
    assert run_cli('coldoc', 'stop', infofile).returncode == 0
    assert run_cli('coldoc', 'daemon', infofile).returncode == 0
    second = read_infofile(infofile)
    assert second['pid'] != first['pid']
    assert (second['socket'], second['authkey']) == (first['socket'], first['authkey'])


def test_socket_and_authkey_given(workdir):
    infofile = os.path.join(workdir, 'info')
    socket_path = os.path.join(workdir, 'sock')
    done = run_cli('coldoc', 'daemon', infofile, socket_path, 'a long shared secret')
    assert done.returncode == 0, done.stderr
    info = read_infofile(infofile)
    assert info['socket'] == socket_path and info['authkey'] == b'a long shared secret'
    assert os.stat(socket_path).st_mode & 0o777 == 0o600


def test_daemon_against_a_live_server_fails_with_its_output(workdir):
    infofile = os.path.join(workdir, 'info')
    assert run_cli('coldoc', 'daemon', infofile).returncode == 0
    pid = read_infofile(infofile)['pid']
    done = run_cli('coldoc', 'daemon', infofile)
    assert done.returncode == 1
    assert f'already running (pid {pid})' in done.stderr
    assert run_cli('coldoc', 'ping', infofile).returncode == 0


def test_foreground_start_stops_on_sigterm(workdir):
    infofile = os.path.join(workdir, 'info')
    server = subprocess.Popen([CLI, 'coldoc', 'start', infofile], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=cli_env())
    try:
        line = server.stdout.readline()
        assert 'serving on' in line, line + server.stderr.read()
        socket_path = read_infofile(infofile)['socket']
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        assert not os.path.exists(socket_path)
        assert not os.path.exists(infofile + '.lock')
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize('arguments', [
    ('coldoc',), ('coldoc', 'frobnicate'), ('coldoc', 'start'), ('coldoc', 'ping'),
    ('coldoc', 'daemon', 'x', '--queue', 'bad:many'), ('coldoc', 'daemon', 'x', '--concurrency', '0'),
    ('coldoc', 'daemon', 'x', '--mode', 'sometimes'), ('coldoc', 'status', 'x', '--bogus'),
])
def test_wrong_arguments_print_usage_and_exit_2(arguments):
    done = run_cli(*arguments)
    assert done.returncode == 2, (arguments, done.stdout, done.stderr)
    assert 'usage:' in done.stderr


def test_unreadable_infofile_is_a_clear_error(workdir):
    infofile = os.path.join(workdir, 'info')
    with open(infofile, 'w') as stream:
        stream.write('not json')
    done = run_cli('coldoc', 'ping', infofile)
    assert done.returncode == 1 and 'cannot be read' in done.stderr
