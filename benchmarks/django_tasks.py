"""The round trip of a trivial task through the Django Tasks backend, next
to the fork class's, on one coldoc server, in one run.

    python -m benchmarks.django_tasks [--n 300] [--rounds 3] [--json]

A temporary Django site (its settings in a private temporary directory,
``TASKS`` on :class:`~coldoc_tasks.django.backend.ColdocTasksBackend`) gets a
coldoc server of its own (queue default:2, reused workers, Django set up in
them).  In interleaved rounds, each system makes ``n`` round trips, one
after the other:

* ``django``: ``django_noop.enqueue(i)``, then ``result.refresh()`` until it
  has finished (Django offers no blocking wait: each refresh is one
  ``Describe`` request to the server, made again at once);
* ``fork``: ``ColdocFork().run(noop, i)`` then ``wait()`` (the outcome is
  pushed to the client).

It prints the median and 90th percentile of each, per round, and the ratio
of the medians within each round; for ``django`` also the time from the
result's ``enqueued_at`` to its ``finished_at`` (what the task took as the
server saw it, without the polling).  Nothing is written.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

SETTINGS = '''
SECRET_KEY = 'benchmark-only'
INSTALLED_APPS = ['coldoc_tasks'{backport}]
USE_TZ = True
DATABASES = {{}}
COLDOC_TASKS_INFOFILE = {infofile!r}
COLDOC_TASKS_LOGFILE = {logfile!r}
COLDOC_TASKS_PYTHONPATH = [{workdir!r}, {root!r}]
COLDOC_TASKS_QUEUES = ['default:2:reuse']
TASKS = {{'default': {{'BACKEND': 'coldoc_tasks.django.backend.ColdocTasksBackend'}}}}
'''


def _setup(workdir: str) -> None:
    import django

    backport = ", 'django_tasks'" if django.VERSION < (6,) else ''
    settings = SETTINGS.format(backport=backport, infofile=os.path.join(workdir, 'tasks.info'),
                               logfile=os.path.join(workdir, 'tasks.log'), workdir=workdir, root=str(REPO_ROOT))
    pathlib.Path(workdir, 'bench_django_settings.py').write_text(settings)
    sys.path.insert(0, workdir)
    os.environ['DJANGO_SETTINGS_MODULE'] = 'bench_django_settings'
    os.environ.pop('COLDOC_TASKS_AUTOSTART_OPTIONS', None)
    django.setup()


def _django_round_trip(task, i: int, finished_after: list[float] | None = None) -> float:
    started = time.perf_counter()
    result = task.enqueue(i)
    while not result.is_finished:
        result.refresh()
    elapsed = time.perf_counter() - started
    assert result.return_value == i, result.errors
    if finished_after is not None:  # as the server saw it: no polling in it
        finished_after.append((result.finished_at - result.enqueued_at).total_seconds())
    return elapsed


def _fork_round_trip(fork_class, noop, i: int) -> float:
    started = time.perf_counter()
    fork = fork_class()
    fork.run(noop, i)
    value = fork.wait(timeout=60)
    elapsed = time.perf_counter() - started
    assert value == i
    return elapsed


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {'p50_ms': statistics.median(ordered) * 1e3, 'p90_ms': ordered[int(0.9 * (len(ordered) - 1))] * 1e3}


def measure(n: int, rounds: int) -> list[dict]:
    """``rounds`` interleaved rounds of ``n`` round trips on each system."""
    workdir = tempfile.mkdtemp(prefix='bench-djt-')
    try:
        _setup(workdir)
        from coldoc_tasks.coldoc.fork import bind_fork_class
        from coldoc_tasks.coldoc_tasks import shutdown
        from coldoc_tasks.django.autostart import start_coldoc_daemon
        from coldoc_tasks.django.settings import read_settings

        from .bench_django_tasks import django_noop
        from .bench_tasks import noop

        conf = read_settings()
        start_coldoc_daemon(conf)
        try:
            fork_class = bind_fork_class(conf.infofile)
            for i in range(5):  # warm up: connections made, workers forked and importing the tasks
                _django_round_trip(django_noop, i)
                _fork_round_trip(fork_class, noop, i)
            results = []
            for number in range(1, rounds + 1):
                finished_after: list[float] = []
                django_times = [_django_round_trip(django_noop, i, finished_after) for i in range(n)]
                fork_times = [_fork_round_trip(fork_class, noop, i) for i in range(n)]
                django_summary, fork_summary = _summary(django_times), _summary(fork_times)
                results.append({'round': number, 'n': n, 'django': django_summary, 'fork': fork_summary,
                                'django_enqueued_to_finished': _summary(finished_after),
                                'ratio_p50': django_summary['p50_ms'] / fork_summary['p50_ms'],
                                'load': os.getloadavg()[0]})
            return results
        finally:
            shutdown(conf.infofile, grace=0, timeout=15)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.django_tasks', description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=300, help='round trips per system and round (default 300)')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds (default 3)')
    parser.add_argument('--json', action='store_true', help='print the figures as JSON')
    args = parser.parse_args(argv)
    results = measure(args.n, args.rounds)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(f'round {r["round"]} ({r["n"]} each, load {r["load"]:.2f}): '
              f'Django backend enqueue->result p50 {r["django"]["p50_ms"]:.3f} ms, p90 {r["django"]["p90_ms"]:.3f} ms '
              f'(enqueued_at->finished_at p50 {r["django_enqueued_to_finished"]["p50_ms"]:.3f} ms); '
              f'fork class run->wait p50 {r["fork"]["p50_ms"]:.3f} ms, p90 {r["fork"]["p90_ms"]:.3f} ms; '
              f'ratio of the medians {r["ratio_p50"]:.2f}')
    ratios = sorted(r['ratio_p50'] for r in results)
    print(f'median ratio over the rounds {statistics.median(ratios):.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]')
    return 0


if __name__ == '__main__':
    sys.exit(main())
