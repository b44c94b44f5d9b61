"""Starting and always stopping the servers and workers a system needs.

Every service is started in a session (so a process group) of its own, on
loopback only, and its pid is appended to the *pid file* the driver gave
(``BENCH_PIDFILE``): if this process dies before its ``finally`` runs, the
driver still stops what it started (see :func:`kill_recorded`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable

#: Redis on loopback, and the database number each Redis-based system owns.
REDIS_HOST, REDIS_PORT = '127.0.0.1', 6379
REDIS_DBS = {'celery_peer': 11, 'celery': 12, 'rq': 13, 'huey': 14}
PIDFILE_ENV = 'BENCH_PIDFILE'


def redis_url(system: str) -> str:
    """The Redis URL of ``system``'s own database."""
    return f'redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DBS[system]}'


def redis_client(system: str):
    """A client of ``system``'s database (raises if Redis does not answer)."""
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DBS[system], socket_timeout=10,
                         socket_connect_timeout=2)
    client.ping()
    return client


def redis_keys_memory(client) -> int:
    """Bytes Redis uses for the keys of this client's database (``MEMORY USAGE``)."""
    total = 0
    batch = []
    for key in client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            total += _usage(client, batch)
            batch = []
    return total + _usage(client, batch)


def _usage(client, keys: list) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(value or 0 for value in pipe.execute())


def ensure_redis(workdir: str) -> subprocess.Popen | None:
    """Start a private ``redis-server`` on loopback if none answers on the
    benchmark's port and one is installed; return it (to stop), or ``None``."""
    import socket

    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((REDIS_HOST, REDIS_PORT)) == 0:
            return None
    server = shutil.which('redis-server')
    if server is None:
        return None
    process = start_process([server, '--bind', REDIS_HOST, '--port', str(REDIS_PORT), '--save', '',
                             '--appendonly', 'no', '--dir', workdir], os.path.join(workdir, 'redis.log'))

    def answers() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex((REDIS_HOST, REDIS_PORT)) == 0

    wait_until(answers, 10.0, 'redis-server did not start')
    return process


def record_pid(pid: int) -> None:
    """Note ``pid`` (a process group leader) for :func:`kill_recorded`."""
    path = os.environ.get(PIDFILE_ENV)
    if path:
        with open(path, 'a') as stream:
            stream.write(f'{pid}\n')


def kill_group(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the process group ``pid`` leads, SIGKILL it after ``grace`` s."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        _signal(pid, signum)
        if signum == signal.SIGTERM and wait_gone(pid, grace):
            _signal(pid, signal.SIGKILL)  # what the leader left behind in its group
            return


def _signal(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` is gone (reaping it if it is our child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        if not os.path.exists(f'/proc/{pid}') or _is_zombie(pid):
            return True
        time.sleep(0.02)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat', 'rb') as stream:
            stat = stream.read()
        return stat[stat.rindex(b')') + 2:].split()[0] == b'Z'
    except (OSError, ValueError):
        return True


def kill_recorded(pidfile: str) -> list[int]:
    """Stop every process group listed in ``pidfile`` that is still alive."""
    killed = []
    with contextlib.suppress(FileNotFoundError):
        with open(pidfile) as stream:
            pids = [int(line) for line in stream if line.strip()]
        for pid in pids:
            if os.path.exists(f'/proc/{pid}') and not _is_zombie(pid):
                kill_group(pid, grace=2.0)
                killed.append(pid)
    return killed


def start_process(command: list[str], logfile: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``command`` in a new session, output to ``logfile``; record its pid."""
    environment = dict(os.environ if env is None else env)
    with open(logfile, 'ab') as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=environment, start_new_session=True)
    record_pid(process.pid)
    return process


def python_command(*args: str) -> list[str]:
    """``python ARGS`` with this interpreter."""
    return [sys.executable, *args]


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until true; raise ``TimeoutError`` naming ``what``.
    (Polling is fine here: it only waits for services to come up.)"""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f'{what} within {timeout} s')
        time.sleep(interval)
