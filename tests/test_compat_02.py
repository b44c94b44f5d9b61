"""Compatibility with coldoc_tasks 0.2, as ColDoc and 0.2's README call it.

Each test makes the calls exactly as they are written there, against a real
coldoc server or a real Celery worker; docs/upgrading.md lists them.
"""

from __future__ import annotations

import base64
import multiprocessing
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import pytest

import coldoc_tasks.coldoc_tasks as CT
import coldoc_tasks.task_utils as TU
from coldoc_tasks.simple_tasks import NoFork, SimpleFork, fork_class, nofork_class
from tests import compat_jobs, jobs
from tests.fixtures_coldoc import ROOT
from tests.helpers_coldoc import run_python


@pytest.fixture(autouse=True)
def _fresh_choices():
    compat_jobs.CHOSEN.clear()


@pytest.fixture
def short_dir():
    """A short private directory (AF_UNIX socket paths are short)."""
    directory = tempfile.mkdtemp(prefix='ct-02-')
    yield directory
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith('info') and not name.endswith(('.lock', '.log')):
            try:
                CT.shutdown(path, grace=0, timeout=20)
            except Exception:
                pass
    shutil.rmtree(directory, ignore_errors=True)


# -- the chooser, as ColDoc's views.py, utils.py and tasks.py use it ------------------


def test_chooser_with_callback_is_a_fork_class(coldoc_server):
    chooser = TU.choose_best_fork_class(coldoc_server.infofile, None, callback=compat_jobs.record_choice)
    f = chooser()
    f.run(jobs.add, 1, 2)
    assert f.wait() == 3
    assert chooser.fork_type == 'coldoc'
    assert compat_jobs.CHOSEN == ['coldoc']  # called once, with the class, when the choice was made
    assert chooser().can_fork() is True
    inline = chooser(use_fork=False)
    assert inline.use_fork is False
    inline.run(os.getpid)
    assert inline.wait() == os.getpid()
    name, fork_class_now = chooser  # the seed's form on the same object
    assert name == 'coldoc' and fork_class_now.fork_type == 'coldoc'


def test_chooser_without_callback_and_seed_form(tmp_path):
    chooser = TU.choose_best_fork_class(str(tmp_path / 'no-infofile'), None)  # as ColDoc's tasks.py
    assert chooser.fork_type == 'simple'
    assert chooser().can_fork()
    name, cls = TU.choose_best_fork_class(infofile=None, celeryconfig=None, preferences=('celery', 'coldoc', 'simple'))
    assert (name, cls) == ('simple', SimpleFork)
    assert TU.choose_best_fork_class(preferences=('celery', 'coldoc')) == ('nofork', NoFork)


def test_chooser_pickled_into_a_task_runs_subtasks(coldoc_server):
    chooser = TU.choose_best_fork_class(coldoc_server.infofile, None, callback=compat_jobs.record_choice)
    f = chooser()
    f.run(compat_jobs.chain, chooser, 4)
    assert f.wait(timeout=60) == ['coldoc'] * 5
    f = chooser()
    f.run(compat_jobs.fan_out, chooser, 3)
    assert f.wait(timeout=60) == [0, 1, 4]
    f = chooser()
    f.run(compat_jobs.where_am_i, chooser)
    inside = f.wait(timeout=60)
    assert inside['pid'] != os.getpid()
    # the copy chose again where it landed, and called the callback there
    assert (inside['fork_type'], inside['can_fork'], inside['callback_saw']) == ('coldoc', True, ['coldoc'])


def test_chooser_on_a_concurrency_1_server_nested(make_server):
    server = make_server(queues=('default:1:fresh',))
    chooser = TU.choose_best_fork_class(server.infofile, None)
    f = chooser()
    f.run(compat_jobs.chain, chooser, 3)
    assert f.wait(timeout=60) == ['coldoc'] * 4


def test_chooser_on_celery_runs_subtasks(celery_redis_worker, tmp_path):
    chooser = TU.choose_best_fork_class(str(tmp_path / 'no-infofile'), str(celery_redis_worker.celeryconfig),
                                        callback=compat_jobs.record_choice)
    assert chooser.fork_type == 'celery'
    assert compat_jobs.CHOSEN == ['celery']
    assert chooser().can_fork()
    f = chooser()
    f.run(compat_jobs.chain, chooser, 2)
    assert f.wait(timeout=120) == ['celery'] * 3


def test_chooser_follows_the_server(make_server):
    server = make_server()
    chooser = TU.choose_best_fork_class(server.infofile, None, refresh_time_interval=3600,
                                        callback=compat_jobs.record_choice)
    assert chooser.fork_type == 'coldoc'
    CT.shutdown(server.infofile, grace=0)
    os.unlink(server.infofile)  # the infofile disappeared: choose again at once, not in an hour
    assert chooser.fork_type == 'simple'
    assert compat_jobs.CHOSEN == ['coldoc', 'simple']
    f = chooser()
    f.run(jobs.add, 2, 2)
    assert f.wait(timeout=30) == 4


def test_chooser_pickles_before_and_after_choosing(coldoc_server):
    chooser = TU.choose_best_fork_class(coldoc_server.infofile, None, refresh_time_interval=30,
                                        callback=compat_jobs.record_choice)
    copy = pickle.loads(pickle.dumps(chooser))
    assert copy.fork_type == 'coldoc' and copy.refresh_time_interval == 30
    assert chooser.fork_type == 'coldoc'
    again = pickle.loads(pickle.dumps(chooser))
    assert again.callback is compat_jobs.record_choice


def test_bad_chooser_arguments_are_named():
    with pytest.raises(ValueError, match='refresh_time_interval'):
        TU.choose_best_fork_class(refresh_time_interval=-1)
    with pytest.raises(TypeError, match='callback'):
        TU.choose_best_fork_class(callback='not callable')
    with pytest.raises(CT.ColdocTasksException, match='frob'):
        TU.choose_best_fork_class(preferences='frob,simple')


# -- fork objects pickled into the Django session ------------------------------------


WAIT_IN_ANOTHER_PROCESS = '''
import base64, pickle, sys
forks = pickle.loads(base64.b85decode(sys.stdin.read().strip()))
print(repr([f.wait(timeout=60) for f in forks]))
'''


def test_session_pickled_forks_are_waited_from_another_process(coldoc_server):
    chooser = TU.choose_best_fork_class(coldoc_server.infofile, None, callback=compat_jobs.record_choice)
    fork1, fork2 = chooser(), chooser()
    fork1.run(jobs.add, 20, 22)
    fork2.run(compat_jobs.chain, chooser, 2)
    session_value = base64.b85encode(pickle.dumps((fork1, fork2))).decode('ascii')
    waiter = run_python(WAIT_IN_ANOTHER_PROCESS, stdin=subprocess.PIPE)
    out, err = waiter.communicate(session_value, timeout=90)
    assert waiter.returncode == 0, err
    assert out.strip() == repr([42, ['coldoc'] * 3])


# -- can_fork and use_fork ------------------------------------------------------------


def test_can_fork_on_every_fork_class():
    assert nofork_class.can_fork() is False and nofork_class().can_fork() is False
    assert nofork_class(use_fork=True).use_fork is False
    assert fork_class.can_fork() is True and fork_class().use_fork is True
    assert fork_class(use_fork=False).use_fork is False
    assert CT.fork_class.can_fork() is True
    assert TU.all_fork_classes == ('celery', 'coldoc', 'simple', 'nofork')


# -- the control functions, as 0.2's README and its users call them ------------------


def noprint(*args, **kwargs):
    pass


def test_daemon_control_by_address_and_authkey(short_dir):
    info = os.path.join(short_dir, 'info_1')
    proc, info_ = CT.tasks_daemon_autostart(infofile=info, logfile=True, pythonpath=str(ROOT))
    assert info_ == info and proc
    address, authkey, info_pid = CT.tasks_server_readinfo(info)[:3]
    assert isinstance(authkey, bytes)
    assert CT.server_pid(address, authkey) == info_pid == proc
    assert CT.task_server_check(info) == (True, address, authkey, info_pid)
    status = CT.status(address, authkey)
    assert isinstance(status, dict) and status['pid'] == info_pid
    assert CT.ping(address, authkey)
    assert CT.test(address, authkey, print_=noprint) == 0
    # logfile=True: a new private log beside the infofile, where the server logs
    logs = [name for name in os.listdir(short_dir) if name.endswith('.log')]
    assert len(logs) == 1
    log = os.path.join(short_dir, logs[0])
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600 and os.path.getsize(log) > 0
    assert CT.tasks_server_readinfo(info)[3]['logfile'] == log
    f = CT.fork_class(address=address, authkey=authkey)
    f.run(jobs.add, 3, 4)
    assert f.wait() == 7
    CT.shutdown(address, authkey)
    assert TU.proc_join(proc, timeout=30)
    assert not CT.ping(address, authkey, warn=False)
    assert CT.status(address, authkey) is None
    assert CT.task_server_check(info)[0] is False
    # started again: the same address and key, so clients holding them reconnect
    proc2, _ = CT.tasks_daemon_autostart(infofile=info, logfile=True)
    assert proc2 and proc2 != proc
    assert CT.tasks_server_readinfo(info)[:2] == [address, authkey]
    assert CT.ping(address, authkey)
    assert CT.shutdown(address, authkey)
    assert TU.proc_join(proc2, timeout=30)


def test_autostart_answers_with_the_running_server(coldoc_server):
    proc, info = CT.tasks_daemon_autostart(coldoc_server.infofile)
    assert (proc, info) == (coldoc_server.pid, coldoc_server.infofile)


def test_autostart_options(short_dir, monkeypatch):
    info = os.path.join(short_dir, 'info_opt')
    assert CT.tasks_daemon_autostart(info, opt='noautostart') == (None, info)
    monkeypatch.setenv('COLDOC_TASKS_AUTOSTART_OPTIONS', 'noautostart')
    assert CT.tasks_daemon_autostart(info) == (None, info)
    assert not os.path.exists(info)
    monkeypatch.setenv('COLDOC_TASKS_AUTOSTART_OPTIONS', 'force')
    proc, _ = CT.tasks_daemon_autostart(info, logfile=True)
    assert proc == CT.server_pid(info)
    # nocheck: start without asking first; the live server refuses the second one
    failed, error = CT.tasks_daemon_autostart(info, opt='nocheck,force')
    assert failed is False and 'already running' in str(error)
    assert CT.ping(info)['pid'] == proc


def test_proc_join_forms():
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    assert TU.proc_join(child.pid, timeout=30)  # a pid, reaped
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, 0)
    popen = subprocess.Popen([sys.executable, '-c', 'pass'])
    assert TU.proc_join(popen, timeout=30) and popen.returncode == 0
    process = multiprocessing.get_context('fork').Process(target=int)
    process.start()
    assert TU.proc_join(process, timeout=30) and process.exitcode == 0
    assert TU.proc_join(True) and TU.proc_join(False)
    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        assert TU.proc_join(sleeper.pid, timeout=0.2) is False
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(TypeError, match='str'):
        TU.proc_join('1234')


def test_format_exception():
    try:
        raise ValueError('x')
    except ValueError as exc:
        lines = TU.format_exception(exc)
    assert lines[-1] == 'ValueError: x\n' and 'test_format_exception' in ''.join(lines)


def test_address_and_infofile_forms_are_told_apart(coldoc_server):
    address, authkey = CT.tasks_server_readinfo(coldoc_server.infofile)[:2]
    assert CT.ping(coldoc_server.infofile, 5.0)['pid'] == CT.ping(address, authkey)['pid']
    assert CT.ping(address=address, authkey=authkey)['pid'] == coldoc_server.pid
    assert CT.server_pid(coldoc_server.infofile) == CT.server_pid(address, authkey.decode('latin-1').encode('latin-1'))
    with pytest.raises(CT.ColdocTasksUsageError, match='authkey'):
        CT.ping(address=address)
    with pytest.raises(CT.ColdocTasksUsageError, match='not both'):
        CT.ping(coldoc_server.infofile, address=address, authkey=authkey)
    with pytest.raises(CT.InfofileError):
        CT.ping(os.path.join(os.path.dirname(coldoc_server.infofile), 'nothing'), raise_errors=True)


# -- the command line ----------------------------------------------------------------


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'coldoc_tasks.cli', *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)), **kwargs)


def test_cli_02_forms(short_dir):
    info = os.path.join(short_dir, 'info_cli')
    sock = os.path.join(short_dir, 'sock')
    done = cli('coldoc', 'daemon', info, sock, 'secret-key')  # 0.2: daemon INFOFILE SOCKET [AUTHKEY], no log given
    assert done.returncode == 0, done.stderr
    assert 'logging to ' in done.stdout
    log = done.stdout.rsplit('logging to ', 1)[1].strip()
    assert os.path.dirname(log) == short_dir and stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert CT.tasks_server_readinfo(info)[:2] == [sock, b'secret-key']
    done = cli('coldoc', 'shutdown', info)
    assert done.returncode == 0, done.stderr
    assert CT.ping(info) is None
    # start_with INFOFILE: a server in the foreground with what the infofile holds
    server = subprocess.Popen([sys.executable, '-m', 'coldoc_tasks.cli', 'coldoc', 'start_with', info],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert 'serving on ' + sock in server.stdout.readline()
        assert CT.ping(sock, b'secret-key')['pid'] == server.pid
    finally:
        assert cli('coldoc', 'stop', info).returncode == 0
        server.wait(30)


def test_simple_subprocess_pid_and_kill():
    f = fork_class()
    f.run(time.sleep, 60)
    pid = f.subprocess_pid
    assert isinstance(pid, int) and pid != os.getpid()
    f.kill(signal.SIGKILL)
    with pytest.raises(CT.ColdocTasksProcessLookupError, match='SIGKILL'):
        f.wait(timeout=30)
    f.kill()  # ended and collected: nothing to do
    inline = fork_class(use_fork=False)
    inline.run(int, '3')
    assert inline.subprocess_pid is None and inline.wait() == 3


def test_an_empty_file_reserved_for_the_infofile_is_used(short_dir):
    # 0.2's users reserve the name with tempfile.NamedTemporaryFile(delete=False)
    with tempfile.NamedTemporaryFile(prefix='info_', dir=short_dir, delete=False) as reserved:
        info = reserved.name
    proc, info_ = CT.tasks_daemon_autostart(infofile=info, logfile=True)
    assert proc and info_ == info
    assert CT.ping(*CT.tasks_server_readinfo(info)[:2])['pid'] == proc
    with open(os.path.join(short_dir, 'notes'), 'w') as notes:
        notes.write('not empty\n')
    failed, error = CT.tasks_daemon_autostart(os.path.join(short_dir, 'notes'))
    assert failed is False and 'not an infofile' in str(error)
    with open(os.path.join(short_dir, 'notes')) as notes:
        assert notes.read() == 'not empty\n'
