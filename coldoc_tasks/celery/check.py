"""The self-check of the ``celery`` backend against live workers
(``coldoc_tasks_cli celery test``), in this package's form and in 0.2's."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import celery

from ..exceptions import ColdocTasksBackendUnavailableError, ColdocTasksUsageError
from ..selfcheck import run_checks
from .app import resolve_celeryconfig
from .control import CHECK_TIMEOUT, ping
from .fork import CeleryFork, fork_class_for

__all__ = ['test']

logger = logging.getLogger(__name__)


def test(celeryconfig: str | os.PathLike | None = None, print_: Callable[[str], Any] | float | None = None, *,
         timeout: float | None = None, app: celery.Celery | None = None) -> float | int:
    """Check the workers by running tasks on them.

    Given ``timeout`` (a keyword, or a number as second argument) or
    ``app``: run a trivial task and one that raises; return the round-trip
    time of the first in seconds, and raise what went wrong.

    Otherwise, as coldoc_tasks 0.2's ``test(celeryconfig, print_=print)``:
    run the self-check of the fork-class contract (values, exceptions,
    timeouts, lost processes, terminate, nested tasks, pickled fork objects),
    print one line per check through ``print_``, and return the number of
    failures (0: all is well)."""
    if isinstance(print_, (int, float)) and not isinstance(print_, bool):
        print_, timeout = None, float(print_)
    if timeout is None and app is None:
        return _self_check(celeryconfig, print_ or print)
    return _round_trip(celeryconfig, 30.0 if timeout is None else timeout, app)


def _self_check(celeryconfig: str | os.PathLike | None, print_: Callable[[str], Any]) -> int:
    try:
        path = resolve_celeryconfig(celeryconfig)
        answering = ping(path, timeout=CHECK_TIMEOUT, limit=1)
    except (ColdocTasksBackendUnavailableError, ColdocTasksUsageError) as exc:
        print_(f'FAIL  the Celery workers cannot be checked: {exc}')
        return 1
    if not answering:
        print_(f'FAIL  no Celery worker answers a ping within {CHECK_TIMEOUT} s')
        return 1
    print_(f'checking the Celery workers of {path} (answering: {answering[0]})')
    return run_checks(fork_class_for(path), out=print_)


def _round_trip(celeryconfig: str | os.PathLike | None, timeout: float, app: celery.Celery | None) -> float:
    if app is None:
        f = CeleryFork(celeryconfig=resolve_celeryconfig(celeryconfig))
        g = CeleryFork(celeryconfig=f._celeryconfig)
    else:
        f, g = CeleryFork(app=app), CeleryFork(app=app)
    started = time.monotonic()
    f.run(pow, 2, 10)
    if f.wait(timeout=timeout) != 1024:
        raise ColdocTasksUsageError('the test task returned a wrong value')
    elapsed = time.monotonic() - started
    g.run(int, 'not a number')
    if not isinstance(g.wait(timeout=timeout, raise_exception=False), ValueError):
        raise ColdocTasksUsageError('the test task did not raise the expected ValueError')
    return elapsed
