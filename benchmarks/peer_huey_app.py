"""The huey peer: Redis storage (a database of its own), blocking reads of
the queue and of results (``notify_result``), so that no side polls."""

from __future__ import annotations

from huey import RedisHuey

from . import bench_tasks
from .services import REDIS_DBS, REDIS_HOST, REDIS_PORT

huey = RedisHuey('bench_peer', host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DBS['huey'], blocking=True,
                 notify_result=True)


@huey.task(name='bench.noop')
def noop(value=None):
    """:func:`bench_tasks.noop`."""
    return bench_tasks.noop(value)


@huey.task(name='bench.burn')
def burn(ms=25.0):
    """:func:`bench_tasks.burn`."""
    return bench_tasks.burn(ms)


@huey.task(name='bench.nested')
def nested(depth, timeout=10.0):
    """Run ``nested(depth - 1)`` and wait for it, as the other systems do."""
    if depth <= 0:
        return 0
    return nested(depth - 1, timeout).get(blocking=True, timeout=timeout) + 1
