"""The coldoc server's files: it never writes or removes what it did not
create (links, foreign files, live sockets), keeps its files private, cleans
up after itself, and ``stop`` stops even a server that does not answer.

Each case runs real servers through the command line, on real files in a
private directory; a case that needs a second local user makes one when the
tests run as root, and is skipped otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from coldoc_tasks.coldoc.daemon import ColdocTasksStartError
from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc.safefiles import PrivateRotatingFileHandler
from coldoc_tasks.coldoc.stop import stop_server
from coldoc_tasks.coldoc_tasks import ping, shutdown, tasks_daemon_autostart
from tests.fixtures_coldoc import ROOT
from tests.helpers import process_exists, wait_process_gone
from tests.test_cli import CLI, run_cli

TARGET_TEXT = 'a file somebody else owns; nothing may write it\n'


@pytest.fixture
def workdir():
    """A private directory (short: socket paths are limited); any server
    started in it is stopped, or killed, at the end."""
    directory = tempfile.mkdtemp(prefix='ct-files-')
    yield directory
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith('info') and '.' not in name and os.path.isfile(path) and not os.path.islink(path):
            with contextlib.suppress(Exception):
                pid = read_infofile(path)['pid']
                run_cli('coldoc', 'stop', '--grace', '0', '--timeout', '10', path)
                if not wait_process_gone(pid, timeout=10):
                    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def target(tmp_path):
    """A file a planted link points to: it must stay as it is."""
    path = tmp_path / 'target'
    path.write_text(TARGET_TEXT)
    path.chmod(0o644)
    return path


def assert_untouched(path) -> None:
    with open(path, encoding='utf-8') as stream:
        assert stream.read() == TARGET_TEXT, f'{path} was written'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def daemon(*args: str):
    return run_cli('coldoc', 'daemon', *args)


def stale_socket(path: str) -> None:
    """A socket file nobody listens on, as a killed server leaves it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()


# -- 1 and 3: only a stale socket is replaced ---------------------------------------


@pytest.mark.parametrize('kind', ['file', 'directory', 'symlink'])
def test_something_not_a_socket_at_the_socket_path_is_refused(workdir, target, kind):
    infofile, socket_path = os.path.join(workdir, 'info'), os.path.join(workdir, 'sock')
    if kind == 'file':
        with open(socket_path, 'w') as stream:
            stream.write(TARGET_TEXT)
        os.chmod(socket_path, 0o644)
    elif kind == 'directory':
        os.mkdir(socket_path)
    else:
        os.symlink(target, socket_path)
    done = daemon(infofile, socket_path)
    assert done.returncode == 1, done.stdout
    assert socket_path in done.stderr and 'refusing' in done.stderr, done.stderr
    if kind == 'file':
        assert_untouched(socket_path)
    elif kind == 'directory':
        assert os.path.isdir(socket_path)
    else:
        assert os.readlink(socket_path) == str(target)
        assert_untouched(target)
    assert not os.path.exists(infofile)


def test_a_stale_socket_is_replaced(workdir):
    infofile, socket_path = os.path.join(workdir, 'info'), os.path.join(workdir, 'sock')
    stale_socket(socket_path)
    done = daemon(infofile, socket_path)
    assert done.returncode == 0, done.stderr
    assert ping(infofile)['pid'] == read_infofile(infofile)['pid']


def test_a_live_servers_socket_is_not_taken_over(workdir):
    first, second = os.path.join(workdir, 'info1'), os.path.join(workdir, 'info2')
    socket_path = os.path.join(workdir, 'sock')
    assert daemon(first, socket_path).returncode == 0
    pid = read_infofile(first)['pid']
    inode = os.lstat(socket_path).st_ino
    done = daemon(second, socket_path)
    assert done.returncode == 1
    assert socket_path in done.stderr and 'a server answers on this socket' in done.stderr, done.stderr
    assert os.lstat(socket_path).st_ino == inode
    assert ping(first)['pid'] == pid
    assert not os.path.exists(second)
    done = run_cli('coldoc', 'stop', first)
    assert done.returncode == 0 and 'stopped' in done.stdout, done.stderr


# -- 2: no link is followed -------------------------------------------------------------


@pytest.mark.parametrize('name', ['info.lock', 'info', 'log'])
def test_a_planted_link_is_refused_and_its_target_untouched(workdir, target, name):
    infofile, logfile = os.path.join(workdir, 'info'), os.path.join(workdir, 'log')
    link = os.path.join(workdir, name)
    os.symlink(target, link)
    done = daemon(infofile, '--logfile', logfile)
    assert done.returncode == 1, done.stdout
    assert f'{link}: it is a symbolic link' in done.stderr, done.stderr
    assert_untouched(target)
    assert os.readlink(link) == str(target)


def test_a_link_at_the_start_lock_is_refused(workdir, target):
    infofile = os.path.join(workdir, 'info')
    os.symlink(target, infofile + '.start.lock')
    failed, error = tasks_daemon_autostart(infofile)
    assert failed is False and 'start.lock: it is a symbolic link' in str(error)
    assert_untouched(target)


def test_a_hard_link_at_the_lock_is_refused(workdir, tmp_path):
    infofile = os.path.join(workdir, 'info')
    precious = tmp_path / 'precious'
    precious.write_text('12\n')  # even one that looks like a lock
    os.link(precious, infofile + '.lock')
    done = daemon(infofile)
    assert done.returncode == 1
    assert 'info.lock: it has 2 hard links' in done.stderr, done.stderr
    assert precious.read_text() == '12\n'


def test_a_lock_file_that_is_not_a_lock_is_refused(workdir):
    infofile = os.path.join(workdir, 'info')
    with open(infofile + '.lock', 'w') as stream:
        stream.write('my notes\n')
    done = daemon(infofile)
    assert done.returncode == 1
    assert 'info.lock: it is not a lock file of coldoc_tasks' in done.stderr, done.stderr
    with open(infofile + '.lock') as stream:
        assert stream.read() == 'my notes\n'


# -- 4: only an infofile is replaced --------------------------------------------------------


# (an empty file holds nothing to lose: it is used, see test_compat_02)
@pytest.mark.parametrize('content', ['my notes about the portal\n', ' \n#\n', '{"socket": "x"}\n', 'key=value\n'])
def test_a_file_that_is_not_an_infofile_is_not_replaced(workdir, content):
    infofile = os.path.join(workdir, 'info')
    with open(infofile, 'w') as stream:
        stream.write(content)
    done = daemon(infofile)
    assert done.returncode == 1
    assert f'{infofile}: it is not an infofile' in done.stderr, done.stderr
    with open(infofile) as stream:
        assert stream.read() == content


def test_an_infofile_of_ours_is_replaced(workdir):
    infofile = os.path.join(workdir, 'info')
    assert daemon(infofile).returncode == 0
    first = read_infofile(infofile)
    os.kill(first['pid'], signal.SIGKILL)
    assert wait_process_gone(first['pid'])
    assert daemon(infofile).returncode == 0
    assert read_infofile(infofile)['pid'] != first['pid']


# -- 5: the log is private ---------------------------------------------------------------------


def test_the_log_is_0600(workdir):
    infofile, logfile = os.path.join(workdir, 'info'), os.path.join(workdir, 'log')
    old_umask = os.umask(0o022)
    try:
        assert daemon(infofile, '--logfile', logfile).returncode == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.lstat(logfile).st_mode) == 0o600
    with open(logfile) as stream:
        assert 'serving on' in stream.read()


def test_an_existing_log_is_appended_and_made_private(workdir):
    infofile, logfile = os.path.join(workdir, 'info'), os.path.join(workdir, 'log')
    with open(logfile, 'w') as stream:
        stream.write('earlier lines\n')
    os.chmod(logfile, 0o644)
    assert daemon(infofile, '--logfile', logfile).returncode == 0
    assert stat.S_IMODE(os.lstat(logfile).st_mode) == 0o600
    with open(logfile) as stream:
        text = stream.read()
    assert text.startswith('earlier lines\n') and 'serving on' in text


def test_rotated_logs_are_0600(tmp_path):
    path = tmp_path / 'log'
    old_umask = os.umask(0o022)
    handler = PrivateRotatingFileHandler(str(path), maxBytes=200, backupCount=3, encoding='utf-8')
    logger = logging.getLogger('tests.rotation')
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for number in range(40):
            logger.warning('line %d of the log, long enough to rotate soon', number)
    finally:
        logger.removeHandler(handler)
        handler.close()
        os.umask(old_umask)
    files = sorted(os.listdir(tmp_path))
    assert files == ['log', 'log.1', 'log.2', 'log.3']
    for name in files:
        assert stat.S_IMODE(os.lstat(tmp_path / name).st_mode) == 0o600, name


# -- 6: the socket directory goes with the server ---------------------------------------------------


def test_the_socket_directory_is_removed_at_stop(workdir):
    infofile = os.path.join(workdir, 'info')
    for _ in range(2):  # the second server reuses the socket path, making its directory again
        assert daemon(infofile).returncode == 0
        directory = os.path.dirname(read_infofile(infofile)['socket'])
        assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
        done = run_cli('coldoc', 'stop', infofile)
        assert done.returncode == 0, done.stderr
        assert not os.path.exists(directory)


def test_a_socket_directory_with_foreign_files_is_left(workdir):
    infofile = os.path.join(workdir, 'info')
    assert daemon(infofile).returncode == 0
    directory = os.path.dirname(read_infofile(infofile)['socket'])
    try:
        with open(os.path.join(directory, 'notes'), 'w') as stream:
            stream.write('mine\n')
        assert run_cli('coldoc', 'stop', infofile).returncode == 0
        assert os.listdir(directory) == ['notes']
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_a_directory_the_server_did_not_make_is_left(workdir):
    infofile, socket_path = os.path.join(workdir, 'info'), os.path.join(workdir, 'sock')
    assert daemon(infofile, socket_path).returncode == 0
    assert run_cli('coldoc', 'stop', infofile).returncode == 0
    assert os.path.isdir(workdir) and not os.path.exists(socket_path)


# -- 8: stop, when the server does not answer --------------------------------------------------------


def test_stop_a_sigstopped_server(workdir):
    infofile = os.path.join(workdir, 'info')
    assert daemon(infofile, '--stop-grace', '1').returncode == 0
    info = read_infofile(infofile)
    os.kill(info['pid'], signal.SIGSTOP)
    try:
        done = run_cli('coldoc', 'stop', '--timeout', '2', infofile)
        assert done.returncode == 0, done.stderr
        assert f'(pid {info["pid"]}) did not answer' in done.stdout and 'stopped with SIGTERM' in done.stdout, \
            done.stdout
        assert wait_process_gone(info['pid'])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info['pid'], signal.SIGCONT)
    assert not os.path.exists(info['socket'])  # it stopped as it does when asked
    assert not os.path.exists(infofile + '.lock')


WEDGED = '''
import json, os, signal, sys
from coldoc_tasks.coldoc.infofile import ServerLock
infofile, socket_path, lock_pid = sys.argv[1], sys.argv[2], sys.argv[3]
signal.signal(signal.SIGTERM, signal.SIG_IGN)
lock = ServerLock(infofile)
assert lock.acquire()
if lock_pid != 'self':
    os.pwrite(lock.fileno, (lock_pid + '\\n').encode(), 0)
with open(infofile, 'w') as stream:
    json.dump({'socket': socket_path, 'authkey': '00' * 16, 'pid': os.getpid(), 'stop_grace': 0.1,
               'terminate_grace': 0.1}, stream)
print('ready', flush=True)
sys.stdin.read()
'''


def start_wedged(workdir: str, lock_pid: str = 'self') -> tuple[subprocess.Popen, str]:
    """A process that holds an infofile's lock, does not answer on its
    socket and ignores SIGTERM: a wedged server."""
    infofile = os.path.join(workdir, 'info')
    process = subprocess.Popen([sys.executable, '-c', WEDGED, infofile, os.path.join(workdir, 'nothing'), lock_pid],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert process.stdout.readline() == 'ready\n'
    return process, infofile


def test_stop_a_wedged_server_with_sigkill(workdir):
    process, infofile = start_wedged(workdir)
    try:
        done = run_cli('coldoc', 'stop', '--grace', '0', '--timeout', '2', infofile)
        assert done.returncode == 0, done.stderr
        assert f'(pid {process.pid}) did not answer' in done.stdout and 'stopped with SIGKILL' in done.stdout
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_stop_signals_nobody_whose_pid_is_not_proved(workdir):
    # the lock is held, but the lock file names another process: no signal
    bystander = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    process, infofile = start_wedged(workdir, lock_pid=str(bystander.pid))
    try:
        done = run_cli('coldoc', 'stop', '--grace', '0', '--timeout', '2', infofile)
        assert done.returncode == 1
        assert 'which process is the server cannot be told' in done.stderr, done.stderr
        assert bystander.poll() is None and process.poll() is None
    finally:
        for child in (process, bystander):
            child.kill()
            child.wait()


def test_stop_ignores_the_pid_of_an_infofile_whose_lock_is_free(workdir):
    bystander = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)
    try:
        infofile = os.path.join(workdir, 'info')
        with open(infofile, 'w') as stream:
            stream.write(f'{{"socket": "{workdir}/nothing", "authkey": "00", "pid": {bystander.pid}}}')
        assert shutdown(infofile, timeout=2) is False
        done = run_cli('coldoc', 'stop', '--timeout', '2', infofile)
        assert done.returncode == 1 and 'no task server answers' in done.stderr
        assert process_exists(bystander.pid) and bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_python_shutdown_stops_a_sigstopped_server(workdir):
    infofile = os.path.join(workdir, 'info')
    assert daemon(infofile, '--stop-grace', '1').returncode == 0
    pid = read_infofile(infofile)['pid']
    os.kill(pid, signal.SIGSTOP)
    try:
        report = stop_server(infofile, timeout=10, answer_timeout=1)
        assert (report.pid, report.how) == (pid, 'SIGTERM')
        assert wait_process_gone(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


# -- a second local user ------------------------------------------------------------------------------


@pytest.fixture
def other_user():
    """A throwaway local user, made for this test and removed after it."""
    if os.geteuid() != 0:
        pytest.skip('needs a second local user: the tests make one only when they run as root')
    if shutil.which('useradd') is None:
        pytest.skip('needs useradd to make a second local user')
    name = f'ctfiles{os.getpid() % 100000}'
    subprocess.run(['useradd', '--no-create-home', '--shell', '/usr/sbin/nologin', name], check=True,
                   capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(['userdel', name], capture_output=True)


def as_user(user, *command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(['setpriv', f'--reuid={user.pw_uid}', f'--regid={user.pw_gid}', '--clear-groups',
                           *command], capture_output=True, text=True, timeout=60, **kwargs)


def test_links_and_files_planted_by_another_user_are_refused(workdir, target, other_user):
    os.chmod(workdir, 0o777)  # a directory others may write in: what a careless setup has
    infofile = os.path.join(workdir, 'info')
    planted = as_user(other_user, 'ln', '-s', str(target), infofile + '.lock')
    assert planted.returncode == 0, planted.stderr
    done = daemon(infofile)
    assert done.returncode == 1 and 'info.lock: it is a symbolic link' in done.stderr, done.stderr
    assert_untouched(target)
    os.unlink(infofile + '.lock')
    assert as_user(other_user, 'touch', infofile + '.lock').returncode == 0
    done = daemon(infofile)
    assert done.returncode == 1
    assert f'info.lock: it belongs to another user (uid {other_user.pw_uid})' in done.stderr, done.stderr
    assert not os.path.exists(infofile)


def test_stop_by_another_user_says_permission(workdir, other_user):
    runs = as_user(other_user, sys.executable, '-c', 'pass')
    if runs.returncode != 0:  # an interpreter installed in a private home, for one
        pytest.skip(f'user {other_user.pw_name} cannot run {sys.executable}: {runs.stderr.strip()[:200]}')
    os.chmod(workdir, 0o755)
    infofile = os.path.join(workdir, 'info')
    assert daemon(infofile).returncode == 0
    pid = read_infofile(infofile)['pid']
    done = as_user(other_user, CLI, 'coldoc', 'stop', '--timeout', '2', infofile)
    assert done.returncode == 1
    assert 'no permission to read the infofile' in done.stderr, done.stderr
    # with the infofile and the lock readable, the socket is still private: signals are tried, and refused
    os.chmod(infofile, 0o644)
    os.chmod(infofile + '.lock', 0o644)
    done = as_user(other_user, CLI, 'coldoc', 'stop', '--timeout', '2', infofile)
    assert done.returncode == 1
    assert f'no permission to signal the task server (pid {pid})' in done.stderr, done.stderr
    assert ping(infofile)['pid'] == pid


def test_autostart_over_a_planted_link_is_a_start_error(workdir, target):
    infofile = os.path.join(workdir, 'info')
    os.symlink(target, infofile + '.lock')
    failed, error = tasks_daemon_autostart(infofile)
    assert failed is False and isinstance(error, ColdocTasksStartError)
    assert 'info.lock: it is a symbolic link' in str(error)
    assert_untouched(target)
