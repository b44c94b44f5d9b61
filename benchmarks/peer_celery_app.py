"""The Celery 5 peer: a plain Celery app of our own, Redis as broker and
result backend (a database of its own), prefork pool of 2."""

from __future__ import annotations

from celery import Celery

from . import bench_tasks
from .services import redis_url

app = Celery('bench_peer', broker=redis_url('celery_peer'), backend=redis_url('celery_peer'))
app.conf.update(
    task_default_queue='bench_peer',
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=False,
)


@app.task(name='bench.noop')
def noop(value=None):
    """:func:`bench_tasks.noop`."""
    return bench_tasks.noop(value)


@app.task(name='bench.burn')
def burn(ms=25.0):
    """:func:`bench_tasks.burn`."""
    return bench_tasks.burn(ms)


@app.task(name='bench.nested')
def nested(depth, timeout=10.0):
    """Run ``nested(depth - 1)`` and wait for it, as the other systems do."""
    if depth <= 0:
        return 0
    return nested.delay(depth - 1, timeout).get(timeout=timeout, disable_sync_subtasks=False) + 1
