"""Ours: the ``celery`` backend of coldoc_tasks, on a Celery worker it starts
itself (prefork, concurrency 2, Redis database of its own)."""

from __future__ import annotations

import os
from importlib import metadata

from .. import services
from .base import Adapter, Unavailable
from .coldoc import REPO_ROOT
from .local import ForkClassAdapter

CELERYCONFIG = """\
broker_url = {url!r}
result_backend = {url!r}
task_serializer = 'pickle'
result_serializer = 'pickle'
accept_content = ['pickle', 'json']
task_default_queue = 'bench_ours'
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True
"""


class OursCeleryAdapter(ForkClassAdapter):
    name, label = 'celery', 'coldoc_tasks celery (Redis, prefork 2)'
    w4_fraction = 0.3  # about 300 tasks/s here

    def start(self, workdir: str) -> None:
        try:
            from coldoc_tasks import celery_tasks
        except Exception as exc:
            raise Unavailable(f'coldoc_tasks.celery_tasks cannot be imported: {exc!r}')
        try:
            self.redis = services.redis_client('celery')
        except Exception as exc:
            raise Unavailable(f'Redis does not answer: {exc}')
        self.redis.flushdb()
        self.celery_tasks = celery_tasks
        self.config = os.path.join(workdir, 'celeryconfig.py')
        with open(self.config, 'w') as stream:
            stream.write(CELERYCONFIG.format(url=services.redis_url('celery')))
        environment = dict(os.environ)
        environment['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, environment.get('PYTHONPATH')]))
        if os.geteuid() == 0:  # Celery refuses pickle as root unless told (CI runs as root)
            environment['C_FORCE_ROOT'] = '1'
        try:
            self.pid = celery_tasks.daemon(self.config, os.path.join(workdir, 'celery.log'), timeout=60,
                                           concurrency=2, loglevel='WARNING', env=environment)
        except Exception as exc:
            raise Unavailable(f'the celery backend did not start: {exc}')
        services.record_pid(self.pid)
        self.fork_class = celery_tasks.fork_class_for(self.config)
        for fork in [self.submit('noop', i) for i in range(4)]:
            self.collect(fork, 60)

    def stop(self) -> None:
        pid = getattr(self, 'pid', None)
        if pid is not None:
            try:
                self.celery_tasks.stop(self.config, timeout=10)
            except Exception:
                pass
            services.kill_group(pid, grace=5.0)
        redis = getattr(self, 'redis', None)
        if redis is not None:
            redis.flushdb()

    def server_pids(self) -> list[int]:
        return [self.pid]

    def outside_memory(self) -> int:
        return services.redis_keys_memory(self.redis)

    def stored_results(self, handles: list) -> int:
        return sum(1 for key in self.redis.scan_iter(match='celery-task-meta-*', count=5000))

    def versions(self) -> dict[str, str]:
        return {**super().versions(), 'celery': metadata.version('celery')}


__all__ = ['OursCeleryAdapter', 'Adapter']
