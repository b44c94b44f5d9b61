"""Fixtures for the celery backend (a pytest plugin loaded by conftest.py).

``BACKENDS`` lists the names this module adds to the contract suite; for each
name N there is a fixture ``backend_N`` returning a ``tests.conftest.Backend``.

Each broker gets one real Celery worker for the whole session, started with
:func:`coldoc_tasks.celery_tasks.daemon` from a celeryconfig written for this
run: its own queue and control exchange, so that concurrent runs, and any
other worker on the machine, do not see each other's tasks.  Results go to
Redis in :data:`REDIS_DB`.  A broker that cannot be reached skips its tests
with the reason (and fails them under CI=true).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import socket
import uuid

import pytest

BACKENDS: list[str] = ['celery-redis', 'celery-rabbitmq']

REDIS_DB = 15
REDIS_URL = f'redis://127.0.0.1:6379/{REDIS_DB}'
BROKERS = {
    'redis': ('127.0.0.1', 6379, REDIS_URL),
    'rabbitmq': ('127.0.0.1', 5672, 'amqp://guest:guest@127.0.0.1:5672//'),
}
#: Pool processes of the test workers: small, so that nested tasks must not starve.
CONCURRENCY = 2
REPO = pathlib.Path(__file__).resolve().parent.parent


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def write_celeryconfig(directory: pathlib.Path, broker: str, **settings) -> tuple[pathlib.Path, str]:
    """Write a celeryconfig for ``broker`` ('redis' or 'rabbitmq') with a
    queue and control exchange of its own; return its path and the queue."""
    name = f'coldoc-tests-{uuid.uuid4().hex[:12]}'
    values = {
        'broker_url': BROKERS[broker][2],
        'result_backend': REDIS_URL,
        'task_default_queue': name,
        'control_exchange': name,
        'result_expires': 3600,
        'broker_connection_retry_on_startup': True,
        **settings,
    }
    path = directory / f'celeryconfig_{name.replace("-", "_")}.py'
    path.write_text(''.join(f'{key} = {value!r}\n' for key, value in values.items()))
    return path, name


def worker_environment() -> dict[str, str]:
    env = dict(os.environ)
    # the worker must import the tests' task functions
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO), env.get('PYTHONPATH')]))
    if os.geteuid() == 0:
        # Celery refuses to run a worker that accepts pickle as root unless told
        # to; the test machines run everything as root.
        env['C_FORCE_ROOT'] = 'true'
    return env


def descendants(pid: int) -> list[int]:
    """All processes below ``pid`` (Linux /proc), children first."""
    found = []
    try:
        tasks = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return found
    for tid in tasks:
        with contextlib.suppress(OSError), open(f'/proc/{pid}/task/{tid}/children') as f:
            for child in map(int, f.read().split()):
                found.append(child)
                found.extend(descendants(child))
    return found


def kill_tree(pid: int, grace: float = 15.0) -> None:
    """SIGTERM worker ``pid`` (a warm shutdown), SIGKILL it and everything
    it started if it is not gone after ``grace`` seconds; reap it."""
    from tests.helpers import wait_process_gone

    family = descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_process_gone(pid, grace):
        for victim in [pid, *descendants(pid), *family]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    for victim in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


@dataclasses.dataclass
class Worker:
    """A Celery worker started for the tests."""

    broker: str
    celeryconfig: pathlib.Path
    queue: str
    pid: int
    logfile: pathlib.Path
    fork_class: type


@contextlib.contextmanager
def running_worker(directory: pathlib.Path, broker: str, concurrency: int = CONCURRENCY, **settings):
    """Start a worker for ``broker`` (skip if the broker is unreachable),
    yield a :class:`Worker`, and always stop it and remove its queue."""
    from tests.conftest import skip_or_fail

    host, port, _ = BROKERS[broker]
    for needed, (h, p) in (('broker', (host, port)), ('result backend (Redis)', BROKERS['redis'][:2])):
        if not port_open(h, p):
            skip_or_fail(f'the {needed} at {h}:{p} cannot be reached')
    try:
        from coldoc_tasks import celery_tasks
    except ImportError as exc:
        skip_or_fail(f'celery is not installed: {exc}')
    path, queue = write_celeryconfig(directory, broker, **settings)
    logfile = directory / f'{queue}.log'
    pid = celery_tasks.daemon(path, logfile, timeout=60, concurrency=concurrency, env=worker_environment())
    try:
        yield Worker(broker, path, queue, pid, logfile, celery_tasks.get_fork_class(celeryconfig=path))
    finally:
        kill_tree(pid)
        remove_queue(celery_tasks.app_for(path), queue)


def remove_queue(app, queue: str) -> None:
    """Delete the run's queue and exchanges from the broker (best effort)."""
    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_delete(queue)
        for exchange in (queue, f'{queue}.pidbox', f'reply.{queue}.pidbox'):
            with contextlib.suppress(Exception):
                channel.exchange_delete(exchange)
        client = getattr(channel, 'client', None)  # the Redis transport keeps bindings as keys
        if client is not None:
            for key in list(client.scan_iter(match=f'*{queue}*')):
                client.delete(key)


@pytest.fixture(scope='session')
def celery_redis_worker(tmp_path_factory):
    with running_worker(tmp_path_factory.mktemp('celery-redis'), 'redis') as worker:
        yield worker


@pytest.fixture(scope='session')
def celery_rabbitmq_worker(tmp_path_factory):
    with running_worker(tmp_path_factory.mktemp('celery-rabbitmq'), 'rabbitmq') as worker:
        yield worker


@pytest.fixture(params=['redis', 'rabbitmq'])
def celery_worker(request):
    """The session's worker, once per broker."""
    return request.getfixturevalue(f'celery_{request.param}_worker')


def _backend(name: str, worker: Worker):
    from tests.conftest import Backend

    return Backend(name, worker.fork_class)


@pytest.fixture(name='backend_celery-redis')
def backend_celery_redis(celery_redis_worker):
    return _backend('celery-redis', celery_redis_worker)


@pytest.fixture(name='backend_celery-rabbitmq')
def backend_celery_rabbitmq(celery_rabbitmq_worker):
    return _backend('celery-rabbitmq', celery_rabbitmq_worker)
