"""Celery worker control, as Python functions and as ``coldoc_tasks_cli
celery ...``, on real workers started by the tests."""

from __future__ import annotations

import importlib
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from tests.conftest import IN_CI

importlib.import_module('celery') if IN_CI else pytest.importorskip('celery')  # CI must not skip

from coldoc_tasks import celery_tasks  # noqa: E402
from coldoc_tasks.exceptions import ColdocTasksBackendUnavailableError  # noqa: E402
from tests.fixtures_celery import BROKERS, kill_tree, port_open, worker_environment, write_celeryconfig  # noqa: E402
from tests.helpers import wait_process_gone  # noqa: E402

CLI = str(pathlib.Path(sys.executable).with_name('coldoc_tasks_cli'))


def cli(*args, env=None, timeout=90):
    environment = worker_environment() if env is None else env
    environment.pop(celery_tasks.ENV_CELERYCONFIG, None)
    return subprocess.run([CLI, 'celery', *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env=environment)


@pytest.fixture
def redis_celeryconfig(tmp_path):
    """A celeryconfig of its own (no worker serves its queue yet)."""
    if not port_open(*BROKERS['redis'][:2]):
        from tests.conftest import skip_or_fail

        skip_or_fail('Redis at 127.0.0.1:6379 cannot be reached')
    path, _ = write_celeryconfig(tmp_path, 'redis')
    return path


@pytest.mark.parametrize('args, message', [
    ((), 'a command is needed'),
    (('start',), 'CELERYCONFIG'),
    (('daemon',), 'CELERYCONFIG'),
    (('ping',), 'CELERYCONFIG is needed'),
    (('status',), 'CELERYCONFIG is needed'),
    (('stop',), 'CELERYCONFIG is needed'),
    (('test',), 'CELERYCONFIG is needed'),
    (('frobnicate',), 'invalid choice'),
    (('status', 'a.py', '--timeout', 'soon'), 'invalid float'),
])
def test_wrong_arguments_are_a_usage_error(args, message):
    done = cli(*args, timeout=30)
    assert done.returncode == 2, done
    assert 'usage:' in done.stderr and message in done.stderr


def test_help_lists_the_commands():
    done = cli('--help', timeout=30)
    assert done.returncode == 0
    for command in ('start', 'daemon', 'stop', 'status', 'ping', 'test'):
        assert command in done.stdout


def test_cli_ping_status_and_test_on_a_running_worker(celery_worker):
    config = celery_worker.celeryconfig
    done = cli('ping', config)
    assert done.returncode == 0 and done.stdout.count(': pong') == 1, done
    done = cli('status', config)
    assert done.returncode == 0, done
    assert 'concurrency 2' in done.stdout and celery_tasks.RUN_TASK_NAME in done.stdout
    done = cli('status', config, '--json')
    assert done.returncode == 0, done
    (info,) = json.loads(done.stdout)['workers'].values()
    assert info['concurrency'] == 2 and info['active'] == [] and celery_tasks.RUN_TASK_NAME in info['registered']
    done = cli('test', config)
    assert done.returncode == 0 and 'round trip' in done.stdout, done


def test_the_environment_names_the_celeryconfig(celery_worker):
    environment = {**worker_environment(), celery_tasks.ENV_CELERYCONFIG: str(celery_worker.celeryconfig)}
    done = subprocess.run([CLI, 'celery', 'ping'], capture_output=True, text=True, timeout=60, env=environment)
    assert done.returncode == 0 and ': pong' in done.stdout, done


def test_cli_without_a_worker(redis_celeryconfig, tmp_path):
    done = cli('ping', redis_celeryconfig)
    assert done.returncode == 1 and 'no Celery worker answered' in done.stdout
    done = cli('status', redis_celeryconfig)
    assert done.returncode == 1 and 'no Celery worker answered' in done.stdout
    unreachable, _ = write_celeryconfig(tmp_path, 'redis', broker_url='redis://127.0.0.1:1/0')
    done = cli('ping', unreachable)
    assert done.returncode == 1 and 'cannot be reached' in done.stderr
    done = cli('ping', tmp_path / 'missing.py')
    assert done.returncode == 1 and 'does not exist' in done.stderr


def test_cli_daemon_then_stop(redis_celeryconfig, tmp_path):
    logfile = tmp_path / 'worker.log'
    done = cli('daemon', redis_celeryconfig, logfile, '--concurrency', '1')
    assert done.returncode == 0, done
    pid = int(done.stdout.split()[-1])
    try:
        assert celery_tasks.ping(redis_celeryconfig, timeout=5, limit=1)
        fork_class = celery_tasks.get_fork_class(celeryconfig=redis_celeryconfig)
        f = fork_class()
        f.run(pow, 3, 3)
        assert f.wait(timeout=30) == 27
        done = cli('stop', redis_celeryconfig)
        assert done.returncode == 0 and f'(pid {pid}) told to stop' in done.stdout, done
        assert wait_process_gone(pid, 30)
        assert 'ready' in logfile.read_text()
    finally:
        kill_tree(pid)


def test_cli_start_runs_in_the_foreground(redis_celeryconfig):
    process = subprocess.Popen([CLI, 'celery', 'start', str(redis_celeryconfig), '--concurrency', '1'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=worker_environment())
    try:
        deadline = time.monotonic() + 60
        names = []
        while not names and time.monotonic() < deadline and process.poll() is None:
            names = celery_tasks.ping(redis_celeryconfig, timeout=1, limit=1)  # each ping blocks up to 1 s
        assert names and names[0].startswith(f'coldoc_tasks.{process.pid}@')
        assert list(celery_tasks.stop(redis_celeryconfig, timeout=30)) == names
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            kill_tree(process.pid)


def test_autostart_starts_a_worker_only_when_none_answers(redis_celeryconfig, tmp_path):
    pid = celery_tasks.autostart(redis_celeryconfig, tmp_path / 'worker.log', concurrency=1, env=worker_environment())
    try:
        assert pid is not None
        assert celery_tasks.autostart(redis_celeryconfig, concurrency=1, env=worker_environment()) is None
        stopped = celery_tasks.stop(redis_celeryconfig, timeout=30)
        assert list(stopped.values()) == [pid]
        assert wait_process_gone(pid, 30)
        assert celery_tasks.ping(redis_celeryconfig, timeout=0.5) == []
    finally:
        kill_tree(pid)


def test_a_worker_that_cannot_start_is_reported(redis_celeryconfig, tmp_path):
    broken, _ = write_celeryconfig(tmp_path, 'redis', worker_pool='no_such_module:Pool')
    logfile = tmp_path / 'worker.log'
    start = time.monotonic()
    with pytest.raises(ColdocTasksBackendUnavailableError, match='exited with code') as info:
        celery_tasks.daemon(broken, logfile, timeout=60, env=worker_environment())
    assert str(logfile) in str(info.value)
    assert 'its last output' in str(info.value) and 'no_such_module' in str(info.value)  # the tail of its log
    assert time.monotonic() - start < 30
    with pytest.raises(ColdocTasksBackendUnavailableError, match='exited with code') as info:
        celery_tasks.daemon(broken, timeout=60, env=worker_environment())  # no log file: its own output
    assert 'no_such_module' in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason='only root needs C_FORCE_ROOT')
def test_as_root_the_worker_is_allowed_pickle_with_a_warning(redis_celeryconfig, tmp_path, caplog):
    environment = worker_environment()
    environment.pop('C_FORCE_ROOT', None)
    logfile = tmp_path / 'worker.log'
    with caplog.at_level('WARNING', logger='coldoc_tasks.celery_control'):
        pid = celery_tasks.daemon(redis_celeryconfig, logfile, timeout=60, concurrency=1, env=environment)
    try:
        assert 'C_FORCE_ROOT' in caplog.text and 'pickle' in caplog.text and 'trusted' in caplog.text
        f = celery_tasks.get_fork_class(celeryconfig=redis_celeryconfig)()
        f.run(pow, 2, 5)
        assert f.wait(timeout=30) == 32
    finally:
        celery_tasks.stop(redis_celeryconfig, timeout=30)
        kill_tree(pid)


def test_daemon_refuses_an_unreachable_broker(tmp_path):
    unreachable, _ = write_celeryconfig(tmp_path, 'redis', broker_url='redis://127.0.0.1:1/0')
    with pytest.raises(ColdocTasksBackendUnavailableError, match='cannot be reached'):
        celery_tasks.daemon(unreachable, env=worker_environment())
    assert os.path.exists(unreachable)


def test_simultaneous_autostarts_start_one_worker(redis_celeryconfig, tmp_path):
    code = ('import sys; from coldoc_tasks import celery_tasks; '
            'print(celery_tasks.autostart(sys.argv[1], sys.argv[2], concurrency=1))')
    processes = [subprocess.Popen([sys.executable, '-c', code, str(redis_celeryconfig), str(tmp_path / f'{i}.log')],
                                  stdout=subprocess.PIPE, text=True, env=worker_environment()) for i in range(4)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in processes]
    started = [int(out) for out in outputs if out != 'None']
    try:
        assert len(started) == 1 and outputs.count('None') == 3, outputs
        assert len(celery_tasks.ping(redis_celeryconfig, timeout=1)) == 1
    finally:
        celery_tasks.stop(redis_celeryconfig, timeout=30)
        for pid in started:
            kill_tree(pid)
