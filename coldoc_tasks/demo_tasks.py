"""The tasks of the demo (:mod:`coldoc_tasks.demo`), in a module of their
own: a task travels to the server's workers by its importable name, which a
function of the module run as ``__main__`` does not have."""

from __future__ import annotations

import math
import time

from .progress import progress

__all__ = ['count_primes', 'parse_age', 'parse_ages']


def count_primes(limit: int) -> int:
    """Count the primes below ``limit`` by trial division (slow on
    purpose, to keep a CPU busy for a moment), reporting the progress."""
    found = 0
    step = max(1, limit // 40)
    for start in range(2, limit, step):
        stop = min(start + step, limit)
        found += sum(1 for n in range(start, stop) if all(n % d for d in range(2, math.isqrt(n) + 1)))
        progress(stop, limit, f'{found:,} primes so far')
    return found


def parse_age(text: str) -> int:
    """Fails on purpose when ``text`` is not a number."""
    return int(text)


def parse_ages(texts: tuple[str, ...]) -> list[int]:
    """Parse each of ``texts``, reporting the progress; fails at the first
    that is not a number."""
    ages = []
    for i, text in enumerate(texts):
        progress(i, len(texts), f'parsing {text!r}')
        time.sleep(0.3)  # slow enough to be watched
        ages.append(parse_age(text))
    return ages
