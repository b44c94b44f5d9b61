"""coldoc_tasks 0.2's Celery calls, made exactly as its users (ColDoc) make
them, against a real worker on Redis: ``tasks_daemon_autostart``, ``ping``,
``test``, ``status``, ``shutdown``/``stop``, ``fork_class(celeryconfig=...)``
and ``can_fork``; and this version's forms of the same names, still working."""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import stat
import subprocess
import sys
import time

import pytest

from tests.conftest import IN_CI, skip_or_fail

celery = importlib.import_module('celery') if IN_CI else pytest.importorskip('celery')  # CI must not skip

from coldoc_tasks import celery_tasks, task_utils  # noqa: E402
from coldoc_tasks.celery_tasks import fork_class  # noqa: E402
from coldoc_tasks.exceptions import ColdocTasksUsageError  # noqa: E402
from tests import jobs  # noqa: E402
from tests.fixtures_celery import BROKERS, REPO, kill_tree, port_open, remove_queue, write_celeryconfig  # noqa: E402
from tests.helpers import wait_process_gone  # noqa: E402

STATUS_KEYS = {'availability', 'stats', 'registered_tasks', 'active_tasks', 'scheduled_tasks'}


@pytest.fixture(scope='module')
def autostarted(tmp_path_factory):
    """A worker started as 0.2's users start one; yields (celeryconfig, proc, tempdir)."""
    if not port_open(*BROKERS['redis'][:2]):
        skip_or_fail('Redis at 127.0.0.1:6379 cannot be reached')
    directory = tmp_path_factory.mktemp('celery-compat')
    celeryconfig, queue = write_celeryconfig(directory, 'redis')
    celeryconfig = str(celeryconfig)
    assert not celery_tasks.ping(celeryconfig)  # nothing answers yet
    proc = celery_tasks.tasks_daemon_autostart(celeryconfig, pythonpath=(str(REPO),), logfile=True, tempdir=directory)
    assert proc not in (True, False, None), proc
    try:
        yield celeryconfig, proc, directory
    finally:
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                celery_tasks.shutdown(celeryconfig)
            kill_tree(proc.pid)
        remove_queue(celery_tasks.app_for(celeryconfig), queue)


def test_autostart_returns_the_process_then_true(autostarted):
    celeryconfig, proc, directory = autostarted
    assert isinstance(proc, subprocess.Popen) and proc.pid and proc.poll() is None
    assert celery_tasks.ping(celeryconfig)  # truthy, as 0.2's
    assert celery_tasks.celery_server_check(celeryconfig) is True
    assert celery_tasks.tasks_daemon_autostart(celeryconfig) is True  # one answers: nothing started
    (logfile,) = directory.glob('coldoc_tasks_celery_*.log')  # logfile=True: a temporary log, in tempdir
    assert stat.S_IMODE(logfile.stat().st_mode) == 0o600
    assert 'ready' in logfile.read_text()


def test_the_0_2_fork_class(autostarted):
    celeryconfig, _, _ = autostarted
    assert fork_class.fork_type == 'celery' and fork_class.can_fork() is True
    f = fork_class(celeryconfig=celeryconfig)
    assert f.can_fork()
    f.run(jobs.add, 20, 22)
    assert f.wait() == 42
    g = fork_class(use_fork=True, celeryconfig=celeryconfig, celery_app=None, timeout=30, queue=None)
    g.run(jobs.fail, 'as in 0.2')
    with pytest.raises(jobs.JobError):
        g.wait()
    h = fork_class(True, celeryconfig)  # 0.2's positional order
    h.run(jobs.add, 1, 2)
    assert h.wait(timeout=30) == 3
    app = celery_tasks.app_for(celeryconfig)
    k = fork_class(celery_app=app, timeout=30)
    k.run(jobs.add, 2, 2)
    assert k.app is app and k.timeout == 30 and pickle.loads(pickle.dumps(k)).wait() == 4
    m = fork_class(False, celeryconfig)
    m.run(jobs.add, 3)
    assert m.wait() == 3
    with pytest.raises(ColdocTasksUsageError, match='not both'):
        fork_class(app=app, celery_app=celery_tasks.make_app(celeryconfig))


def test_the_0_2_test_counts_failures(autostarted):
    celeryconfig, _, _ = autostarted
    lines = []
    assert celery_tasks.test(celeryconfig, print_=lines.append) == 0, '\n'.join(lines)
    assert any('nested tasks' in line for line in lines) and lines[-1] == '0 failure(s)'
    assert celery_tasks.test(celeryconfig, lines.append) == 0


def test_the_0_2_status(autostarted):
    celeryconfig, proc, _ = autostarted
    info = celery_tasks.status(celeryconfig)
    assert set(info) == STATUS_KEYS
    (name,) = info['availability']
    assert info['availability'][name] == {'ok': 'pong'}
    assert info['stats'][name]['pid'] == proc.pid
    assert celery_tasks.RUN_TASK_NAME in info['registered_tasks'][name]
    assert info['active_tasks'][name] == [] and info['scheduled_tasks'][name] == []


def test_this_versions_forms_still_work(autostarted):
    celeryconfig, proc, _ = autostarted
    workers = celery_tasks.status(celeryconfig, timeout=5)
    ((name, info),) = workers.items()
    assert info['pid'] == proc.pid and celery_tasks.ping(celeryconfig, timeout=5) == [name]
    assert 0 < celery_tasks.test(celeryconfig, timeout=30) < 30
    assert 0 < celery_tasks.test(celeryconfig, 30) < 30
    assert 0 < celery_tasks.test(app=celery_tasks.app_for(celeryconfig)) < 30


def test_no_worker_no_broker_and_the_options(tmp_path, monkeypatch):
    idle, _ = write_celeryconfig(tmp_path, 'redis')
    assert set(celery_tasks.status(str(idle))) == STATUS_KEYS
    assert all(value is None for value in celery_tasks.status(str(idle)).values())
    assert celery_tasks.celery_server_check(str(idle)) is False
    lines = []
    assert celery_tasks.test(str(idle), print_=lines.append) == 1 and 'no Celery worker answers' in lines[-1]
    assert celery_tasks.tasks_daemon_autostart(str(idle), opt='noautostart') is None
    monkeypatch.setenv('COLDOC_TASKS_AUTOSTART_OPTIONS', 'noautostart')
    assert celery_tasks.tasks_daemon_autostart(str(idle)) is None
    assert not celery_tasks.ping(str(idle))  # nothing was started
    # the Django flag's words share the variable: they are not 0.2's keywords, and are left alone
    monkeypatch.setenv('COLDOC_TASKS_AUTOSTART_OPTIONS', 'autostart,noautostart')
    assert celery_tasks.tasks_daemon_autostart(str(idle), force=True) is None
    unreachable, _ = write_celeryconfig(tmp_path, 'redis', broker_url='redis://127.0.0.1:1/0')
    start = time.monotonic()
    assert celery_tasks.tasks_daemon_autostart(str(unreachable), force=True) is False
    assert celery_tasks.celery_server_check(str(unreachable)) is False
    assert time.monotonic() - start < 5


def test_a_0_2_client_in_another_process(autostarted, tmp_path):
    """A script that only knows 0.2's calls, run in a fresh interpreter."""
    celeryconfig, _, _ = autostarted
    script = (
        'import sys\n'
        'from coldoc_tasks.celery_tasks import fork_class, ping\n'
        'assert ping(sys.argv[1])\n'
        'f = fork_class(celeryconfig=sys.argv[1])\n'
        'f.run(pow, 2, 10)\n'
        'print(f.wait())\n')
    out = subprocess.run([sys.executable, '-c', script, celeryconfig], capture_output=True, text=True, timeout=60,
                         env={**os.environ, 'PYTHONPATH': str(REPO)})
    assert out.returncode == 0 and out.stdout.strip() == '1024', out.stderr


def test_shutdown_then_proc_join(autostarted):
    """Last in this module: stops the worker."""
    celeryconfig, proc, _ = autostarted
    celery_tasks.shutdown(celeryconfig)
    assert wait_process_gone(proc.pid, 30)
    proc_join = getattr(task_utils, 'proc_join', None)
    if proc_join is not None:
        proc_join(proc)  # 0.2's way of reaping what tasks_daemon_autostart returned
    assert proc.wait(timeout=5) == 0
    assert not celery_tasks.ping(celeryconfig) and celery_tasks.celery_server_check(celeryconfig) is False
