"""Progress reported from inside a task, read by whoever holds its fork object.

Inside a task, on every backend::

    coldoc_tasks.progress(done, total=None, message='', **metadata)

and where the task was started, at any time, without blocking::

    f.progress()   # the latest Progress(done, total, message, metadata), or None

Outside a task, :func:`progress` checks its arguments and does nothing else.
Where a report goes depends on what runs the task in this process::

    nofork (or use_fork=False)  kept on the fork object that runs it inline
    simple                      a frame on the child's result pipe, before the result
    coldoc                      a message to the server, which keeps the latest and
                                pushes it to the client that submitted the task
    celery                      the task's state in the result backend ('PROGRESS')

A task may report in a tight loop: a :class:`Reporter` keeps the latest
report and sends at most one every :data:`INTERVAL` seconds (one left over
is sent by a timer when the interval has passed), and always sends the last
one before the task's result.  So the cost of a call in the task is a check
of its arguments and a lock; what travels is a few small messages a second.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .exceptions import ColdocTasksUsageError

__all__ = ['Progress', 'progress', 'Reporter', 'reporting', 'INTERVAL', 'MAX_PROGRESS_BYTES']

logger = logging.getLogger(__name__)

#: Seconds between two reports sent by a task's process.
INTERVAL = 0.2
#: The largest JSON encoding of a report's message and metadata, in bytes:
#: a report is a status line, not a way to send data (and, so small, it
#: travels through a pipe in one atomic write).
MAX_PROGRESS_BYTES = 3072
# A message this long or shorter (and no metadata) cannot be over the limit:
# a character takes at most 6 bytes in JSON.
_SHORT_MESSAGE = (MAX_PROGRESS_BYTES - 64) // 6


class Progress(NamedTuple):
    """A task's report: ``done`` out of ``total`` (``None``: unknown), a
    ``message`` and JSON-able ``metadata``."""

    done: float
    total: float | None
    message: str
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-able dict (how status and Celery show it)."""
        return {'done': self.done, 'total': self.total, 'message': self.message, 'metadata': self.metadata}

    @classmethod
    def from_dict(cls, data: Any) -> Progress | None:
        """The inverse of :meth:`as_dict`; ``None`` if ``data`` is not a report."""
        if not isinstance(data, dict):
            return None
        done, total = data.get('done'), data.get('total')
        message, metadata = data.get('message', ''), data.get('metadata') or {}
        if not (_is_count(done) and (total is None or _is_count(total))
                and isinstance(message, str) and isinstance(metadata, dict)):
            return None
        return cls(done, total, message, metadata)


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _check_count(name: str, value: Any) -> None:
    # The common types first: this runs at every call of a tight loop.
    kind = type(value)
    if kind is int:
        if value >= 0:
            return
    elif kind is float:
        if 0 <= value < math.inf:  # (NaN compares False)
            return
    elif _is_count(value):
        return
    raise ColdocTasksUsageError(f'progress(): {name} must be a finite number >= 0, not {value!r:.100}')


def check_progress(done: Any, total: Any, message: Any, metadata: dict[str, Any]) -> None:
    """Check the arguments of a report; raise :class:`ColdocTasksUsageError`
    naming what is wrong."""
    _check_count('done', done)
    if total is not None:
        _check_count('total', total)
    if not isinstance(message, str):
        raise ColdocTasksUsageError(f'progress(): message must be a str, not {type(message).__name__}')
    if metadata or len(message) > _SHORT_MESSAGE:
        try:
            size = len(json.dumps([message, metadata], allow_nan=False).encode('utf-8', 'surrogatepass'))
        except (TypeError, ValueError) as exc:
            raise ColdocTasksUsageError(f'progress(): metadata must be JSON-serialisable: {exc}') from None
        if size > MAX_PROGRESS_BYTES:
            raise ColdocTasksUsageError(
                f'progress(): the message and metadata take {size} bytes in JSON, over the limit of '
                f'{MAX_PROGRESS_BYTES}')


class Reporter:
    """Sends the reports of the task this process runs, coalesced.

    :meth:`report` takes a :class:`Progress`, or a plain tuple of its fields
    (made into one only when it is sent: most reports never are).
    ``send(report)`` delivers one :class:`Progress`; it returns False if it could not
    do so now (it is tried again after the interval).  It is called with the
    reporter's lock held, from the task's threads or from a timer thread,
    never after :meth:`close`.
    """

    def __init__(self, send: Callable[[Progress], bool | None], interval: float = INTERVAL):
        self._send = send
        self.interval = interval
        self._lock = threading.Lock()
        self._latest: Progress | tuple | None = None
        self._pending = False
        self._next = 0.0
        self._timer: threading.Timer | None = None
        self._closed = False

    def report(self, report: Progress | tuple) -> None:
        with self._lock:
            if self._closed:
                return
            self._latest = report
            now = time.monotonic()
            if now >= self._next and self._deliver(report, now):
                return
            self._pending = True
            if self._timer is None:
                self._timer = threading.Timer(max(0.0, self._next - now), self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _deliver(self, report: Progress | tuple, now: float) -> bool:
        self._next = now + self.interval
        try:
            sent = self._send(Progress._make(report)) is not False
        except Exception:
            # A report that cannot travel must not fail the task: its result still can.
            logger.warning('cannot send the progress of this task', exc_info=True)
            sent = True
        if sent:
            self._pending = False
        return sent

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._closed or not self._pending:
                return
            now = time.monotonic()
            # A report sent from the task while this timer waited for the
            # lock starts a new interval: the pending one waits for its end.
            if now < self._next or not self._deliver(self._latest, now):
                self._timer = threading.Timer(max(self._next - now, 0.0) or self.interval, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def close(self, flush: bool = True) -> None:
        """Send the report still pending (unless not ``flush``), and no more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if flush and self._pending:
                self._deliver(self._latest, time.monotonic())

    @property
    def latest(self) -> Progress | None:
        """The last report made, sent or not."""
        latest = self._latest
        return None if latest is None else Progress._make(latest)


class _Inline:
    """The reporter of a task run inline: the report goes straight to its
    fork object, with nothing to coalesce."""

    __slots__ = ('store',)

    def __init__(self, store: Callable[[Progress], None]):
        self.store = store

    def report(self, report: Progress | tuple) -> None:
        self.store(Progress._make(report))


# The reporter of the task this process runs (a simple child, a coldoc or
# Celery worker): every thread of the task reports to it.
_process_reporter: Reporter | None = None
# The reporter of a task run inline in this thread (nofork, use_fork=False).
_thread = threading.local()


def _forget_after_fork() -> None:
    # A child of a task is not that task: it must not write to its channel.
    global _process_reporter, _thread
    _process_reporter = None
    _thread = threading.local()


os.register_at_fork(after_in_child=_forget_after_fork)


def progress(done: float, total: float | None = None, message: str = '', **metadata: Any) -> None:
    """Report the progress of the task that runs this code: ``done`` out of
    ``total`` (numbers >= 0; ``total`` may be ``None``, unknown), a
    ``message`` (a str) and JSON-serialisable ``metadata``.

    Cheap enough for a tight loop: reports are coalesced, at most a few a
    second travel, and the last one always does, before the result.  Outside
    a task it does nothing but check its arguments.  A bad argument raises
    :class:`ColdocTasksUsageError`.
    """
    check_progress(done, total, message, metadata)
    reporter = getattr(_thread, 'reporter', None) or _process_reporter
    if reporter is not None:
        reporter.report((done, total, message, metadata))


@contextlib.contextmanager
def reporting(send: Callable[[Progress], bool | None], interval: float = INTERVAL) -> Iterator[Reporter]:
    """Within the block, this process runs a task whose reports go to
    ``send``, coalesced; the last one is sent when the block ends (but not
    when it ends by an exception: the task was interrupted)."""
    global _process_reporter
    reporter = Reporter(send, interval)
    previous, _process_reporter = _process_reporter, reporter
    try:
        yield reporter
    except BaseException:
        reporter.close(flush=False)
        raise
    finally:
        _process_reporter = previous
        reporter.close()


@contextlib.contextmanager
def reporting_inline(store: Callable[[Progress], None]) -> Iterator[None]:
    """Within the block, this thread runs a task inline whose reports go to ``store``."""
    previous = getattr(_thread, 'reporter', None)
    _thread.reporter = _Inline(store)
    try:
        yield
    finally:
        _thread.reporter = previous
