"""Fixtures for the coldoc backend (a pytest plugin loaded by conftest.py).

``BACKENDS`` lists the names this module adds to the contract suite; for each
name N there is a fixture ``backend_N`` returning a ``tests.conftest.Backend``.
Each runs against a real server process, started in the background as users
start it, and stopped at the end of the session.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile

import pytest

from coldoc_tasks.coldoc_tasks import bind_fork_class, shutdown, tasks_daemon_start

BACKENDS: list[str] = ['coldoc_reuse', 'coldoc_fresh']

ROOT = pathlib.Path(__file__).resolve().parent.parent


def log_tail(logfile: str, lines: int = 40) -> str:
    """The last ``lines`` of a server's log, to explain a failure."""
    try:
        with open(logfile, encoding='utf-8', errors='replace') as stream:
            return ''.join(stream.readlines()[-lines:])
    except FileNotFoundError:
        return '(no log)'


@dataclasses.dataclass
class RunningServer:
    """A coldoc server started by a fixture: where to find it."""

    directory: str
    infofile: str
    logfile: str
    pid: int

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.logfile, lines)


def start_server(*extra_args, queues=('default:2:reuse',), **options) -> RunningServer:
    """Start a real server in a fresh private directory (short path: AF_UNIX
    socket paths are limited to about 100 bytes)."""
    directory = tempfile.mkdtemp(prefix='ct-srv-')
    infofile = os.path.join(directory, 'info')
    logfile = os.path.join(directory, 'log')
    options.setdefault('terminate_grace', 1.0)
    options.setdefault('stop_grace', 1.0)
    pid = tasks_daemon_start(infofile, logfile=logfile, queues=queues, pythonpath=[str(ROOT)], timeout=30,
                             **options)
    return RunningServer(directory, infofile, logfile, pid)


def stop_server(server: RunningServer) -> None:
    try:
        shutdown(server.infofile, grace=0, timeout=30)
    except Exception:  # a test may have killed it; it must still go
        pass
    finally:
        from tests.helpers import wait_process_gone

        if not wait_process_gone(server.pid, timeout=10):
            os.kill(server.pid, 9)
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def make_server():
    """Start servers of one's own, for tests that disturb them; each is
    stopped (or killed) at the end of the test."""
    servers = []

    def make(**options) -> RunningServer:
        server = start_server(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        stop_server(server)


@pytest.fixture
def coldoc_server(make_server):
    """A server of one's own, concurrency 2, reused workers."""
    return make_server()


@pytest.fixture(scope='session')
def coldoc_server_reuse():
    server = start_server(queues=('default:2:reuse',))
    yield server
    stop_server(server)


@pytest.fixture(scope='session')
def coldoc_server_fresh():
    server = start_server(queues=('default:2:fresh',))
    yield server
    stop_server(server)


def _backend(name: str, server: RunningServer):
    from tests.conftest import Backend

    return Backend(name, bind_fork_class(server.infofile))


@pytest.fixture
def backend_coldoc_reuse(coldoc_server_reuse):
    return _backend('coldoc_reuse', coldoc_server_reuse)


@pytest.fixture
def backend_coldoc_fresh(coldoc_server_fresh):
    return _backend('coldoc_fresh', coldoc_server_fresh)


@pytest.fixture
def web(coldoc_server):
    """The standalone status page (``coldoc web``) of the shared server."""
    from tests.helpers_web import start_web
    page = start_web(coldoc_server.infofile)
    yield page
    page.stop()
