"""A short tour: run several jobs in the background, watch them finish,
collect their results and one exception with its remote traceback.

Run it with ``python -m coldoc_tasks.demo`` (or ``make demo``).
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback

from .task_utils import choose_best_fork_class


def count_primes(limit: int) -> int:
    """Count the primes below ``limit`` by trial division: slow on purpose,
    to keep a CPU busy for a moment."""
    return sum(1 for n in range(2, limit) if all(n % d for d in range(2, math.isqrt(n) + 1)))


def parse_age(text: str) -> int:
    """Fails on purpose when ``text`` is not a number."""
    return int(text)


def main() -> int:
    name, fork_class = choose_best_fork_class()
    print(f'backend: {name} ({fork_class.__module__}.{fork_class.__qualname__}), main process pid {os.getpid()}')
    limits = [200_000, 50_000, 300_000, 100_000]
    start = time.monotonic()
    jobs = []
    for limit in limits:
        f = fork_class()
        f.run(count_primes, limit)
        jobs.append((limit, f))
        print(f'  scheduled count_primes({limit:,}) as task {f.task_id}')
    bad = fork_class()
    bad.run(parse_age, 'forty-two')
    print(f'  scheduled parse_age("forty-two") as task {bad.task_id}')
    print(f'all {len(jobs) + 1} jobs scheduled in {1000 * (time.monotonic() - start):.1f} ms; the main process is free')

    for limit, f in jobs:
        primes = f.wait(timeout=120)
        print(f'  [{time.monotonic() - start:6.2f} s] there are {primes:,} primes below {limit:,}')

    try:
        bad.wait(timeout=120)
    except ValueError as exc:
        print(f'  [{time.monotonic() - start:6.2f} s] parse_age failed, as it should: {exc!r}')
        print('the exception, re-raised here with the traceback from where the task ran:')
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)
        return 0
    print('parse_age did not fail: something is wrong')
    return 1


if __name__ == '__main__':
    sys.exit(main())
