"""Durations in seconds, checked and written one way everywhere: timeouts,
graces, retention times, intervals."""

from __future__ import annotations

import math

__all__ = ['MAX_SECONDS', 'check_seconds', 'format_seconds']

#: The longest duration anything accepts: a year.
MAX_SECONDS = 365 * 24 * 3600.0


def check_seconds(name: str, value: object, *, minimum: float = 0.0, maximum: float = MAX_SECONDS,
                  none_ok: bool = False) -> float | None:
    """``value`` as a float number of seconds from ``minimum`` to
    ``maximum``; ``None`` too, with ``none_ok`` (waiting for ever).  Raise
    :class:`TypeError` for what is not a number, :class:`ValueError` for a
    number out of range (nan included), naming ``name`` and the range."""
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f'{name} must be a number of seconds{" or None" if none_ok else ""}, '
                        f'not {type(value).__name__}')
    if math.isnan(value) or not minimum <= value <= maximum:
        raise ValueError(f'{name} must be a number of seconds from {minimum:g} to {maximum:g}, not {value!r}')
    return float(value)


def format_seconds(seconds: float | None) -> str:
    """A duration for a message: ``3`` rather than ``2.99999260900006``."""
    return 'unlimited' if seconds is None else f'{round(seconds, 3):g}'
