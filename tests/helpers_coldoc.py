"""Helpers for the tests of the coldoc server: looking into a live server
and checking that it is still healthy after a test disturbed it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc_tasks import bind_fork_class, ping, status
from tests import jobs
from tests.fixtures_coldoc import ROOT, RunningServer


def server_fds(server: RunningServer) -> int:
    """The server's open descriptors, leaving out the two (socket and pidfd)
    that each worker costs, since the number of workers varies.  A count taken
    just after a control request may include its connection, not yet seen
    closed: tests compare later counts with ``<=``."""
    return len(os.listdir(f'/proc/{server.pid}/fd')) - 2 * len(server_children(server))


def server_rss_kib(server: RunningServer) -> int:
    with open(f'/proc/{server.pid}/status') as stream:
        for line in stream:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


def server_children(server: RunningServer) -> set[int]:
    """Pids of the server's worker processes."""
    children = set()
    for task in os.listdir(f'/proc/{server.pid}/task'):
        with open(f'/proc/{server.pid}/task/{task}/children') as stream:
            children.update(int(pid) for pid in stream.read().split())
    return children


def wait_until(predicate, timeout: float = 10.0, what: str = 'the condition', explain=None) -> None:
    """Re-check a condition on the server's files or status until it holds,
    within ``timeout`` seconds (the server offers no event for these).
    ``explain()`` says what was found instead, for the failure message."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            found = f': {explain()}' if explain is not None else ''
            raise AssertionError(f'{what} did not hold within {timeout} s{found}')
        time.sleep(0.02)


def describe_fds(server: RunningServer) -> str:
    """The server's descriptors and workers, to explain a leak."""
    targets = []
    for fd in os.listdir(f'/proc/{server.pid}/fd'):
        try:
            targets.append(f'{fd}->{os.readlink(f"/proc/{server.pid}/fd/{fd}")}')
        except OSError:
            pass
    return (f'{server_fds(server)} counted; workers {sorted(server_children(server))}; '
            f'fds {", ".join(sorted(targets))}')


def counters(server: RunningServer) -> dict:
    return status(server.infofile)['counters']


def assert_healthy(server: RunningServer, **expected_counters: int) -> None:
    """The server answers ping, runs a trivial task, and its counters say
    what happened."""
    answer = ping(server.infofile, timeout=5)
    assert answer is not None and answer['pid'] == server.pid, 'the server does not answer ping'
    f = bind_fork_class(server.infofile)()
    f.run(jobs.add, 40, 2)
    assert f.wait(timeout=30) == 42
    found = counters(server)
    for name, value in expected_counters.items():
        assert found[name] == value, f'counter {name}: {found[name]} != {value} ({found})'


def authkey_of(server: RunningServer) -> bytes:
    return read_infofile(server.infofile)['authkey']


def run_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start ``python -c code`` with the project importable."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
