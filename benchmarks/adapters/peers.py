"""The Redis-based peers: Celery 5 (prefork, concurrency 2), RQ (two
workers, a work-horse process forked per job, as RQ does) and huey (a
consumer with two process workers).  Each owns a Redis database, flushed
before and after."""

from __future__ import annotations

import math
import os
from importlib import metadata
from typing import Any

from .. import bench_tasks, services
from .base import Adapter, Unavailable


def _redis_versions(client) -> dict[str, str]:
    return {'redis server': client.info('server')['redis_version'], 'redis-py': metadata.version('redis')}


class RedisPeer(Adapter):
    """What the three share: a Redis database and worker processes."""

    redis_system = ''

    def start(self, workdir: str) -> None:
        try:
            self.redis = services.redis_client(self.redis_system)
        except Exception as exc:
            raise Unavailable(f'Redis does not answer on {services.REDIS_HOST}:{services.REDIS_PORT}: {exc}')
        self.redis.flushdb()
        self.processes = []
        self.workdir = workdir
        self.start_workers(workdir)
        self.baseline_keys = 0
        # the workers serve once a task goes through
        for handle in [self.submit('noop', i) for i in range(4)]:
            self.collect(handle, 60)

    def start_workers(self, workdir: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for process in getattr(self, 'processes', []):
            services.kill_group(process.pid, grace=5.0)
            process.wait(timeout=5)
        redis = getattr(self, 'redis', None)
        if redis is not None:
            redis.flushdb()

    def server_pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def outside_memory(self) -> int:
        return services.redis_keys_memory(self.redis)

    def _env(self) -> dict:
        environment = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        environment['PYTHONPATH'] = os.pathsep.join(filter(None, [root, environment.get('PYTHONPATH')]))
        return environment


class CeleryPeer(RedisPeer):
    name, label = 'celery-peer', 'Celery 5 + Redis (prefork 2)'
    redis_system = 'celery_peer'
    w4_fraction = 0.3  # about 400 tasks/s here

    def start_workers(self, workdir: str) -> None:
        from ..peer_celery_app import app

        self.app = app
        command = services.python_command(
            '-m', 'celery', '-A', 'benchmarks.peer_celery_app', 'worker', '--pool', 'prefork', '--concurrency', '2',
            '--queues', 'bench_peer', '--loglevel', 'WARNING', '--hostname', f'bench_peer.{os.getpid()}@localhost',
            '--without-gossip', '--without-mingle', '--without-heartbeat')
        self.processes.append(services.start_process(command, os.path.join(workdir, 'celery.log'), self._env()))

    def submit(self, task: str, *args: Any) -> Any:
        from .. import peer_celery_app as tasks

        return getattr(tasks, task).delay(*args)

    def collect(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def after_fork(self) -> None:
        # the parent's broker and backend connections must not be shared
        self.app.pool.force_close_all()
        self.app._pool = None

    def stored_results(self, handles: list) -> int:
        return sum(1 for _ in self.redis.scan_iter(match='celery-task-meta-*', count=5000))

    def versions(self) -> dict[str, str]:
        return {'celery': metadata.version('celery'), 'kombu': metadata.version('kombu'),
                **_redis_versions(self.redis)}


def rq_queue(url: str):
    """The benchmark's RQ queue on the Redis database ``url``."""
    import redis
    from rq import Queue

    return Queue('bench', connection=redis.Redis.from_url(url))


def rq_collect(job, timeout: float) -> Any:
    """Block (XREAD, no polling) until the job's result arrives; its value."""
    result = job.latest_result(timeout=max(1, math.ceil(timeout)))
    if result is None:
        raise TimeoutError(f'RQ job {job.id} did not finish within {timeout} s')
    if result.type != result.Type.SUCCESSFUL:
        raise RuntimeError(f'RQ job {job.id} failed: {result.exc_string}')
    return result.return_value


class RqPeer(RedisPeer):
    name, label = 'rq', 'RQ + Redis (2 workers)'
    redis_system = 'rq'
    # a work-horse process is forked per job: about 50 jobs/s here
    w2_fraction = 0.2
    w4_fraction = 0.1

    def start_workers(self, workdir: str) -> None:
        self.url = services.redis_url('rq')
        self.queue = rq_queue(self.url)
        for i in range(2):
            command = services.python_command('-m', 'rq.cli', 'worker', '--url', self.url, '--name',
                                              f'bench-{os.getpid()}-{i}', 'bench')
            self.processes.append(services.start_process(command, os.path.join(workdir, f'rq{i}.log'), self._env()))

    def submit(self, task: str, *args: Any) -> Any:
        if task == 'nested':
            return self.queue.enqueue(bench_tasks.nested_rq, args[0], self.url, *args[1:])
        return self.queue.enqueue(getattr(bench_tasks, task), *args)

    def collect(self, handle: Any, timeout: float) -> Any:
        return rq_collect(handle, timeout)

    def stored_results(self, handles: list) -> int:
        return self.queue.finished_job_registry.count

    def versions(self) -> dict[str, str]:
        return {'rq': metadata.version('rq'), **_redis_versions(self.redis)}


class HueyPeer(RedisPeer):
    name, label = 'huey', 'huey + Redis (2 processes)'
    redis_system = 'huey'

    def start_workers(self, workdir: str) -> None:
        from ..peer_huey_app import huey

        self.huey = huey
        command = services.python_command('-m', 'huey.bin.huey_consumer', 'benchmarks.peer_huey_app.huey',
                                          '--workers', '2', '--worker-type', 'process', '--quiet')
        self.processes.append(services.start_process(command, os.path.join(workdir, 'huey.log'), self._env()))

    def submit(self, task: str, *args: Any) -> Any:
        from .. import peer_huey_app as tasks

        return getattr(tasks, task)(*args)

    def collect(self, handle: Any, timeout: float) -> Any:
        value = handle.get(blocking=True, timeout=timeout)
        return value

    def stored_results(self, handles: list) -> int:
        return self.huey.storage.result_store_size()

    def versions(self) -> dict[str, str]:
        return {'huey': metadata.version('huey'), **_redis_versions(self.redis)}


PEERS = {'celery-peer': CeleryPeer, 'rq': RqPeer, 'huey': HueyPeer}
