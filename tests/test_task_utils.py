"""Choosing a backend at run time: choose_best_fork_class and the chooser
with refresh, against real servers (a coldoc server, a Celery worker)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time

import pytest

from coldoc_tasks.exceptions import ColdocTasksUsageError
from coldoc_tasks.simple_tasks import NoFork, SimpleFork
from coldoc_tasks.task_utils import ForkClassChooser, choose_best_fork_class, parse_preferences
from tests import jobs
from tests.fixtures_celery import kill_tree, running_worker, worker_environment, write_celeryconfig
from tests.helpers import wait_process_gone


def run_one(fork_class):
    f = fork_class()
    f.run(jobs.add, 20, 22)
    return f.wait(timeout=30)


@pytest.fixture
def idle_celeryconfig(tmp_path):
    """A celeryconfig whose broker is up but whose queue no worker serves."""
    from tests.conftest import skip_or_fail
    from tests.fixtures_celery import BROKERS, port_open

    if not port_open(*BROKERS['redis'][:2]):
        skip_or_fail('Redis at 127.0.0.1:6379 cannot be reached')
    path, _ = write_celeryconfig(tmp_path, 'redis')
    return path


def test_nothing_available_falls_back_to_simple_then_nofork(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger='coldoc_tasks.task_utils')
    missing = dict(infofile=tmp_path / 'no-infofile', celeryconfig=tmp_path / 'no-celeryconfig.py')
    assert choose_best_fork_class(**missing) == ('simple', SimpleFork)
    assert choose_best_fork_class(**missing, preferences=('celery', 'coldoc')) == ('nofork', NoFork)
    text = caplog.text
    assert 'backend celery skipped' in text and 'no-celeryconfig.py does not exist' in text
    assert 'backend coldoc skipped' in text


def test_preferences_as_string_and_unknown_names():
    assert parse_preferences('celery, simple') == ('celery', 'simple')
    assert choose_best_fork_class(preferences='simple') == ('simple', SimpleFork)
    with pytest.raises(ColdocTasksUsageError, match='frob'):
        choose_best_fork_class(preferences='frob,simple')


def test_absent_backends_cost_about_a_second_at_most(tmp_path, idle_celeryconfig):
    unreachable, _ = write_celeryconfig(tmp_path, 'redis', broker_url='redis://127.0.0.1:1/0')
    start = time.monotonic()
    assert choose_best_fork_class(celeryconfig=unreachable, preferences=('celery',))[0] == 'nofork'
    assert time.monotonic() - start < 1.0
    start = time.monotonic()
    assert choose_best_fork_class(infofile=tmp_path / 'none', celeryconfig=idle_celeryconfig)[0] == 'simple'
    assert time.monotonic() - start < 1.8  # the worker ping waits its full second


def test_celery_down_and_coldoc_up(idle_celeryconfig, coldoc_server):
    name, fork_class = choose_best_fork_class(infofile=coldoc_server.infofile, celeryconfig=idle_celeryconfig)
    assert name == 'coldoc' and fork_class.fork_type == 'coldoc'
    assert run_one(fork_class) == 42


def test_celery_up_comes_first(celery_redis_worker, coldoc_server):
    name, fork_class = choose_best_fork_class(coldoc_server.infofile, celery_redis_worker.celeryconfig)
    assert name == 'celery' and fork_class.fork_type == 'celery'
    assert run_one(fork_class) == 42
    assert choose_best_fork_class(coldoc_server.infofile, celery_redis_worker.celeryconfig,
                                  preferences='coldoc,celery')[0] == 'coldoc'


def test_a_worker_coming_up_is_picked_up_after_the_interval(tmp_path, idle_celeryconfig):
    chosen = []
    chooser = ForkClassChooser(celeryconfig=idle_celeryconfig, refresh_time_interval=0.5,
                               callback=lambda name, cls: chosen.append(name))
    assert chooser() is SimpleFork and chooser.name == 'simple'
    checked = time.monotonic()
    assert chooser() is SimpleFork  # within the interval: no new check
    from coldoc_tasks import celery_tasks

    pid = celery_tasks.daemon(idle_celeryconfig, tmp_path / 'worker.log', concurrency=1, env=worker_environment())
    try:
        time.sleep(max(0.0, checked + 0.5 - time.monotonic()))  # let the interval pass, exactly
        fork_class = chooser()
        assert chooser.name == 'celery' and fork_class.fork_type == 'celery'
        assert run_one(fork_class) == 42
    finally:
        kill_tree(pid)
    assert chosen == ['simple', 'celery']


def test_removed_infofile_is_noticed_at_once(coldoc_server):
    chooser = ForkClassChooser(infofile=coldoc_server.infofile, preferences=('coldoc',), refresh_time_interval=None)
    assert chooser().fork_type == 'coldoc'
    hidden = coldoc_server.infofile + '.hidden'
    os.rename(coldoc_server.infofile, hidden)
    try:
        assert chooser() is NoFork and chooser.name == 'nofork'
    finally:
        os.rename(hidden, coldoc_server.infofile)
    assert chooser().fork_type == 'coldoc'  # and its coming back too
    assert run_one(chooser()) == 42



@pytest.mark.parametrize('how', ['stopped', 'killed'])
def test_a_server_gone_is_noticed_at_once(make_server, how):
    # The infofile stays where it is; the server's socket, or its process, goes.
    server = make_server()
    chooser = choose_best_fork_class(infofile=server.infofile, preferences='coldoc,simple', refresh_time_interval=3600)
    assert chooser.fork_type == 'coldoc' and run_one(chooser) == 42
    if how == 'stopped':
        from coldoc_tasks.coldoc_tasks import shutdown
        shutdown(server.infofile, timeout=30)
    else:
        os.kill(server.pid, signal.SIGKILL)
    assert wait_process_gone(server.pid, 30)
    assert os.path.exists(server.infofile)
    assert chooser.fork_type == 'simple' and run_one(chooser) == 42

def test_changed_or_removed_celeryconfig_is_noticed_at_once(tmp_path, celery_redis_worker, idle_celeryconfig):
    path = tmp_path / 'celeryconfig.py'
    shutil.copy(idle_celeryconfig, path)
    chooser = ForkClassChooser(celeryconfig=path, refresh_time_interval=None)
    assert chooser.name is None and chooser() is SimpleFork
    shutil.copy(celery_redis_worker.celeryconfig, path)  # now naming the queue of a live worker
    assert chooser().fork_type == 'celery'
    assert run_one(chooser()) == 42
    path.unlink()
    assert chooser() is SimpleFork


def test_the_celeryconfig_is_never_written(celery_redis_worker):
    path = celery_redis_worker.celeryconfig
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    chooser = ForkClassChooser(celeryconfig=path, refresh_time_interval=0)
    for _ in range(3):
        assert run_one(chooser()) == 42
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before
    assert not list(path.parent.glob('__pycache__'))


def test_callback_errors_are_logged_not_raised(caplog):
    def callback(name, fork_class):
        raise RuntimeError('callback failed')

    chooser = ForkClassChooser(preferences='simple', callback=callback)
    assert chooser() is SimpleFork
    assert 'callback failed' in caplog.text


def test_threads_share_one_chooser():
    chooser = ForkClassChooser(preferences='simple', refresh_time_interval=0)
    results, barrier = [], threading.Barrier(8)

    def use():
        barrier.wait(timeout=30)
        results.extend(chooser() for _ in range(50))

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 400 and set(results) == {SimpleFork}


def test_refresh_interval_must_not_be_negative():
    with pytest.raises(ValueError, match='refresh_time_interval'):
        ForkClassChooser(refresh_time_interval=-1)
    assert ForkClassChooser(preferences='simple').refresh() == ('simple', SimpleFork)


def test_running_worker_helper_stops_what_it_started(tmp_path, idle_celeryconfig):
    from coldoc_tasks import celery_tasks

    with running_worker(tmp_path, 'redis', concurrency=1) as worker:
        assert celery_tasks.ping(worker.celeryconfig, timeout=5, limit=1)
    from tests.helpers import process_exists

    assert not process_exists(worker.pid)


def test_a_coldoc_server_coming_up_is_picked_up_at_once():
    import tempfile

    from coldoc_tasks.coldoc_tasks import shutdown, tasks_daemon_start
    from tests.fixtures_coldoc import ROOT

    directory = tempfile.mkdtemp(prefix='ct-chooser-')
    infofile = os.path.join(directory, 'info')
    chosen = []
    chooser = ForkClassChooser(infofile=infofile, preferences='coldoc,simple', refresh_time_interval=3600,
                               callback=lambda name, cls: chosen.append(name))
    try:
        assert chooser() is SimpleFork  # no server yet
        tasks_daemon_start(infofile, pythonpath=[str(ROOT)])
        assert chooser().fork_type == 'coldoc'  # the new infofile is noticed without waiting for the interval
        assert run_one(chooser()) == 42
        assert shutdown(infofile, grace=0)
        os.unlink(infofile)
        assert chooser() is SimpleFork
        assert chosen == ['simple', 'coldoc', 'simple']
    finally:
        shutdown(infofile, grace=0)
        shutil.rmtree(directory, ignore_errors=True)
