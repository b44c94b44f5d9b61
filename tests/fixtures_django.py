"""Fixtures for the Django tests (a pytest plugin loaded by conftest.py).

``django_site`` gives a :class:`Site`: the example site of
``examples/django_site`` with a settings module of the test's own (its data,
database, infofile and logs in a fresh short temporary directory), and
methods that run ``manage.py``, ``runserver``, ``gunicorn`` and talk HTTP to
them.  Everything a test starts is stopped at the end, even on failure:
the web servers by process group, and the detached task servers and Celery
workers by what their command lines name (the site's directory).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SITE_DIR = ROOT / 'examples' / 'django_site'
SETTINGS_MODULE = 'site_settings'
UP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def processes_naming(text: str) -> dict[int, tuple[int, str]]:
    """``{pid: (ppid, command line)}`` of the live processes whose command
    line contains ``text`` (Linux /proc)."""
    found = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                cmdline = f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue
        if text in cmdline and int(entry) != os.getpid():
            ppid = int(stat.rsplit(')', 1)[1].split()[1])
            if stat.rsplit(')', 1)[1].split()[0] != 'Z':
                found[int(entry)] = (ppid, cmdline)
    return found


def task_servers(directory: str) -> list[int]:
    """The pids of the coldoc task servers (not their workers) run for a site
    whose files are in ``directory``."""
    found = {pid: ppid for pid, (ppid, cmd) in processes_naming(directory).items()
             if 'coldoc_tasks.django.server' in cmd or 'coldoc_tasks.coldoc.cli' in cmd}
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            alive.remove(pid)
            continue
        try:
            import select

            if select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                alive.remove(pid)
        finally:
            os.close(fd)
    return alive


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``process``, SIGKILL it after ``grace``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def kill_naming(text: str, grace: float = 10.0) -> None:
    """SIGTERM every process whose command line names ``text``, then SIGKILL."""
    pids = list(processes_naming(text))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in _wait_gone(pids, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Site:
    """The example site, set up for one test in its own directory."""

    def __init__(self) -> None:
        # short: the socket and the infofile go here (AF_UNIX paths: ~100 bytes)
        self.directory = tempfile.mkdtemp(prefix='ct-dj-')
        self.processes: list[subprocess.Popen] = []
        self.logs: list[pathlib.Path] = []
        self.celeryconfig: pathlib.Path | None = None
        self.port: int | None = None
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    @property
    def path(self) -> pathlib.Path:
        return pathlib.Path(self.directory)

    @property
    def infofile(self) -> str:
        return os.path.join(self.directory, 'tasks.info')

    def configure(self, **settings: Any) -> None:
        """Write the test's settings module: the example's settings, then
        ``settings`` (a value ``None`` deletes the setting)."""
        lines = ['from mysite.settings import *  # noqa', 'from pathlib import Path',
                 f'COLDOC_TASKS_INFOFILE = {self.infofile!r}',
                 f'COLDOC_TASKS_LOGFILE = {os.path.join(self.directory, "tasks.log")!r}',
                 # the site, this module, and the tests (for the probe tasks)
                 f'COLDOC_TASKS_PYTHONPATH = [BASE_DIR, Path({self.directory!r}), {str(ROOT)!r}]']
        for name, value in settings.items():
            lines.append(f'del {name}' if value is None else f'{name} = {value!r}')
        (self.path / f'{SETTINGS_MODULE}.py').write_text('\n'.join(lines) + '\n')

    def environment(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop('COLDOC_TASKS_AUTOSTART_OPTIONS', None)
        env.pop('COLDOC_TASKS_CELERYCONFIG', None)
        env['PYTHONPATH'] = os.pathsep.join([str(SITE_DIR), self.directory])
        env['DJANGO_SETTINGS_MODULE'] = SETTINGS_MODULE
        env['DJANGO_SITE_DATA_DIR'] = self.directory
        env['PYTHONDONTWRITEBYTECODE'] = '1'
        if os.geteuid() == 0:
            env['C_FORCE_ROOT'] = 'true'  # Celery refuses pickle as root without it
        env.update(extra)
        return env

    def manage(self, *args: str, check: bool = True, timeout: float = 120.0,
               **env: str) -> subprocess.CompletedProcess:
        """Run ``manage.py ARGS`` of the site; return its result."""
        result = subprocess.run([sys.executable, str(SITE_DIR / 'manage.py'), *args], cwd=SITE_DIR,
                                env=self.environment(**env), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f'manage.py {" ".join(args)} failed ({result.returncode}):\n'
                                 f'{result.stdout}\n{result.stderr}')
        return result

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run ``coldoc_tasks_cli ARGS`` in the site's environment."""
        return subprocess.run([sys.executable, '-m', 'coldoc_tasks.cli', *args], cwd=self.directory,
                              env=self.environment(), capture_output=True, text=True, timeout=timeout)

    def _spawn(self, name: str, command: list[str], **env: str) -> subprocess.Popen:
        log = self.path / f'{name}.out'
        self.logs.append(log)
        with open(log, 'wb') as output:
            process = subprocess.Popen(command, cwd=SITE_DIR, env=self.environment(**env), stdin=subprocess.DEVNULL,
                                       stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def runserver(self) -> subprocess.Popen:
        """``manage.py runserver`` (with its autoreloader, as users run it)."""
        self.port = free_port()
        process = self._spawn('runserver', [sys.executable, str(SITE_DIR / 'manage.py'), 'runserver',
                                            f'127.0.0.1:{self.port}'])
        self.wait_up(process)
        return process

    def gunicorn(self, workers: int = 4, app: str = 'mysite.wsgi:application', **env: str) -> subprocess.Popen:
        """gunicorn with ``workers`` worker processes, each loading ``app``
        (``env``: more environment variables)."""
        self.port = free_port()
        process = self._spawn('gunicorn', [sys.executable, '-m', 'gunicorn', '--workers', str(workers),
                                           '--bind', f'127.0.0.1:{self.port}', '--timeout', '120', app], **env)
        self.wait_up(process)
        return process

    def output(self) -> str:
        return '\n'.join(f'--- {log.name}\n{log.read_text(errors="replace")}' for log in self.logs if log.exists())

    def wait_up(self, process: subprocess.Popen, timeout: float = UP_TIMEOUT) -> None:
        """Until the site answers on its port (bounded; fails at once if the server exits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f'the web server exited with {process.returncode}:\n{self.output()}')
            with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', self.port), timeout=1):
                return
            time.sleep(0.1)
        raise AssertionError(f'the web server did not listen within {timeout} s:\n{self.output()}')

    def wait_output(self, text: str, count: int, timeout: float = UP_TIMEOUT) -> str:
        """Until ``text`` appears ``count`` times in the web server's output (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            output = self.output()
            if output.count(text) >= count:
                return output
            if time.monotonic() > deadline:
                raise AssertionError(f'{text!r} not seen {count} times within {timeout} s:\n{output}')
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return f'http://127.0.0.1:{self.port}{path}'

    def get_json(self, path: str, timeout: float = 90.0) -> dict:
        with self.opener.open(self.url(path), timeout=timeout) as response:
            return json.loads(response.read())

    def schedule(self, number: int) -> int:
        """Submit the form (with its CSRF token) to factorise ``number``;
        return the id of the computation it redirects to."""
        self.opener.open(self.url('/'), timeout=30).read()
        token = next(c.value for c in self.cookies if c.name == 'csrftoken')
        data = urllib.parse.urlencode({'number': number, 'csrfmiddlewaretoken': token}).encode()
        with self.opener.open(urllib.request.Request(self.url('/'), data=data), timeout=90) as response:
            final = response.geturl()
        return int(final.rstrip('/').rsplit('/', 1)[1])

    def close(self) -> None:
        for process in self.processes:
            stop_group(process)
        from coldoc_tasks.coldoc_tasks import shutdown

        with contextlib.suppress(Exception):
            shutdown(self.infofile, grace=0, timeout=15)
        if self.celeryconfig is not None:
            with contextlib.suppress(Exception):
                from coldoc_tasks import celery_tasks

                celery_tasks.stop(self.celeryconfig, timeout=10)
        # detached task servers (of any infofile here) and Celery workers
        kill_naming(self.directory)
        default = self.default_infofile_directory()
        with contextlib.suppress(Exception):
            shutdown(os.path.join(default, 'infofile'), grace=0, timeout=15)
        kill_naming(default)
        shutil.rmtree(self.directory, ignore_errors=True)
        shutil.rmtree(default, ignore_errors=True)

    def default_infofile_directory(self) -> str:
        """Where the site's infofile goes when COLDOC_TASKS_INFOFILE is unset."""
        from coldoc_tasks.django_support import default_infofile_directory

        return default_infofile_directory(SETTINGS_MODULE, str(self.path / f'{SETTINGS_MODULE}.py'))


@pytest.fixture
def django_site():
    """The example site in a fresh directory; see :class:`Site`."""
    pytest.importorskip('django')
    site = Site()
    try:
        yield site
    finally:
        site.close()


# -- tasks the tests run on a site's task server --------------------------------------


def connection_state() -> dict:
    """A task: does this worker hold an open database connection as the task starts?"""
    from django.db import connection

    was_open = connection.connection is not None
    connection.ensure_connection()
    return {'pid': os.getpid(), 'ppid': os.getppid(), 'open_at_start': was_open}
