"""When and in which order a task runs, as both ends of the protocol know
it: its *priority* (higher first within its queue; first come, first served
among equals) and its *run_after* time (the server holds it until then).

``run_after`` travels as seconds since the epoch (``time.time()``); a
``datetime`` is accepted where it is given, if it is aware (a naive one
would be read in whatever time zone the server has).
"""

from __future__ import annotations

import datetime
import math

from ..exceptions import ColdocTasksUsageError

__all__ = ['MIN_PRIORITY', 'MAX_PRIORITY', 'DEFAULT_PRIORITY', 'check_priority', 'run_after_timestamp',
           'priority_problem']

MIN_PRIORITY = -100
MAX_PRIORITY = 100
DEFAULT_PRIORITY = 0


def priority_problem(priority: object) -> str | None:
    """Why ``priority`` is not a valid priority, or None if it is."""
    if type(priority) is not int:
        return f'a priority must be a whole number (int), not {type(priority).__name__}'
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        return f'a priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}, not {priority}'
    return None


def check_priority(priority: object) -> int:
    """Return ``priority`` if it is an int from :data:`MIN_PRIORITY` to
    :data:`MAX_PRIORITY`; else raise :class:`ColdocTasksUsageError` saying why."""
    problem = priority_problem(priority)
    if problem is not None:
        raise ColdocTasksUsageError(problem)
    return priority  # type: ignore[return-value]


def run_after_timestamp(run_after: float | datetime.datetime | None) -> float | None:
    """``run_after`` as seconds since the epoch (None stays None): a finite
    number, or an aware ``datetime``; raise :class:`ColdocTasksUsageError`
    for anything else."""
    if run_after is None:
        return None
    if isinstance(run_after, datetime.datetime):
        if run_after.tzinfo is None or run_after.utcoffset() is None:
            raise ColdocTasksUsageError(
                f'run_after must be an aware datetime (with a time zone), not the naive {run_after.isoformat()}')
        return run_after.timestamp()
    if isinstance(run_after, bool) or not isinstance(run_after, (int, float)) or not math.isfinite(run_after):
        raise ColdocTasksUsageError(
            f'run_after must be a time in seconds since the epoch or an aware datetime, not {run_after!r:.60}')
    return float(run_after)
