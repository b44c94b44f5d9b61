"""The callables the benchmarks run, importable by every worker.

The Celery and huey peers register wrappers of these in their own app
modules; every other system runs them as they are.
"""

from __future__ import annotations

import time


def noop(value=None):
    """The trivial task: return the argument."""
    return value


def burn(ms: float = 25.0) -> float:
    """Spend ``ms`` milliseconds of this process's CPU time; return the CPU
    time spent, in seconds.  CPU time, not wall time, so that every system
    is given the same work whatever else the machine runs."""
    start = time.process_time()
    end = start + ms / 1000.0
    total = 0
    while time.process_time() < end:
        for i in range(2000):
            total += i
    return time.process_time() - start


def nested_fork(fork_class, depth: int, timeout: float | None = 10.0) -> int:
    """Run ``nested_fork(depth - 1)`` as a child task with a coldoc_tasks
    ``fork_class`` and wait for it; return the depth reached."""
    if depth <= 0:
        return 0
    fork = fork_class()
    fork.run(nested_fork, fork_class, depth - 1, timeout)
    return fork.wait(timeout=timeout) + 1


def nested_barefork(depth: int, timeout: float = 10.0) -> int:
    """Like :func:`nested_fork`, with a bare ``os.fork()`` per level."""
    from .adapters.local import barefork_collect, barefork_submit

    if depth <= 0:
        return 0
    return barefork_collect(barefork_submit(nested_barefork, depth - 1, timeout), timeout) + 1


def nested_rq(depth: int, redis_url: str, timeout: float = 10.0) -> int:
    """Like :func:`nested_fork`, enqueued on the RQ queue of ``redis_url``."""
    from .adapters.peers import rq_collect, rq_queue

    if depth <= 0:
        return 0
    job = rq_queue(redis_url).enqueue(nested_rq, depth - 1, redis_url, timeout)
    return rq_collect(job, timeout) + 1


def progress_loop(n: int = 100_000) -> dict:
    """Time a tight loop of ``n`` iterations twice, bare and with a call of
    ``coldoc_tasks.progress`` in each; return both times, in seconds."""
    from coldoc_tasks import progress

    total = 0
    start = time.perf_counter()
    for i in range(n):
        total += i
    bare = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(n):
        total += i
        progress(i + 1, n, 'step')
    reporting = time.perf_counter() - start
    return {'n': n, 'bare_s': bare, 'progress_s': reporting}
