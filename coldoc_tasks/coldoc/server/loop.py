"""The server's event loop: one ``select`` over every descriptor, timers,
and signals through a wake-up descriptor; no threads, no polling.

The task server and its worker pool use only what :class:`EventLoop`
offers: :meth:`~EventLoop.watch` a descriptor (its callback runs when it is
readable), :meth:`~EventLoop.unwatch` it, :meth:`~EventLoop.want_write` a
channel (its queued messages go out at the end of the turn, one
``sendmsg`` for all of them), :meth:`~EventLoop.call_later`, and
:meth:`~EventLoop.fds_to_close_in_child` for a process it forks.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import selectors
import signal
import socket
import time
from collections.abc import Callable

from .channel import Channel

__all__ = ['EventLoop', 'Timer', 'OUTBOX_HIGH_WATER']

#: Bytes waiting to be sent to a peer above which it is not read from.
OUTBOX_HIGH_WATER = 64 * 1024 * 1024


class Timer:
    """A callback due at a time on the loop's clock; ``cancel`` it if need be."""

    __slots__ = ('when', 'callback', 'cancelled')

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class EventLoop:
    """Descriptors, their callbacks, timers and the output of channels.

    ``keep_from_children``: descriptors (besides those watched) that a
    forked worker must close, such as the server's lock.
    """

    def __init__(self, keep_from_children: list[int] | None = None):
        self.selector = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_ids = itertools.count()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Channel] = {}  # channels waiting for the socket to take more
        self._interest: dict[int, int] = {}  # fd -> the selector events registered for it
        self._dirty: dict[int, Channel] = {}  # channels with messages queued in this turn
        self._keep_from_children = list(keep_from_children or ())
        self._unwatched_this_turn: set[int] = set()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._on_signal: Callable[[int], None] | None = None
        self._saved_signals: dict = {}
        #: called before the output of each turn is sent: the journal writes the turn's records there
        self.before_output: Callable[[], None] | None = None

    # -- the services ---------------------------------------------------------------------

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable."""
        self._callbacks[fd] = callback
        self.selector.register(fd, selectors.EVENT_READ)
        self._interest[fd] = selectors.EVENT_READ

    def unwatch(self, fd: int) -> None:
        """Forget ``fd`` (before it is closed)."""
        if self._callbacks.pop(fd, None) is not None:
            self.selector.unregister(fd)
            self._interest.pop(fd, None)
            # The number may be reused (by a new worker) before the events of
            # this turn are all handled: those left for it are stale.
            self._unwatched_this_turn.add(fd)
        self._writers.pop(fd, None)
        self._dirty.pop(fd, None)

    def want_write(self, channel: Channel) -> None:
        """Have what was queued on ``channel`` sent at the end of this turn of
        the loop: one ``sendmsg`` carries every message of the turn."""
        self._dirty[channel.fd] = channel

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback()`` in ``delay`` seconds, unless cancelled."""
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._timer_ids), timer))
        return timer

    def fds_to_close_in_child(self) -> list[int]:
        """Descriptors a forked worker must not keep: had it kept a client's
        socket, that client would not see the server die."""
        return [self.selector.fileno(), self._wakeup_r.fileno(), self._wakeup_w.fileno(),
                *self._keep_from_children, *self._callbacks]

    @property
    def output_queued(self) -> bool:
        """True if this turn queued messages for some peer."""
        return bool(self._dirty)

    @property
    def output_blocked(self) -> bool:
        """True while some peer's socket has not taken all that was sent to it."""
        return bool(self._writers)

    @property
    def has_output(self) -> bool:
        """True while messages wait to be sent."""
        return bool(self._writers or self._dirty)

    # -- signals ----------------------------------------------------------------------------

    def handle_signals(self, on_signal: Callable[[int], None],
                       signals: tuple = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Call ``on_signal(signum)`` from the loop when one of ``signals`` arrives."""
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self._on_signal = on_signal
        self.watch(self._wakeup_r.fileno(), self._read_signals)
        self._saved_signals = {'wakeup': signal.set_wakeup_fd(self._wakeup_w.fileno())}
        self._saved_signals.update({sig: signal.signal(sig, lambda *_: None) for sig in signals})

    def _read_signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            for signum in self._wakeup_r.recv(64):
                if self._on_signal is not None:
                    self._on_signal(signum)

    def restore_signals(self) -> None:
        saved, self._saved_signals = self._saved_signals, {}
        if 'wakeup' in saved:
            signal.set_wakeup_fd(saved.pop('wakeup'))
        for sig, handler in saved.items():
            signal.signal(sig, handler)

    # -- the loop ------------------------------------------------------------------------

    def run_once(self, next_deadline: Callable[[float], float | None] = lambda now: None) -> None:
        """One turn: due timers, then one ``select`` (bounded by the next
        timer and by ``next_deadline(now)``), the callbacks of what is ready,
        and the output queued meanwhile."""
        now = time.monotonic()
        timeout = None
        timers = self._timers
        while timers:
            when, _, timer = timers[0]
            if timer.cancelled:
                heapq.heappop(timers)
            elif when <= now:
                heapq.heappop(timers)
                timer.callback()
            else:
                timeout = when - now
                break
        if self.before_output is not None:
            self.before_output()
        if self._dirty:  # what the timers queued
            self._flush_dirty()
        deadline = next_deadline(now)
        if deadline is not None:
            timeout = min(timeout, deadline - now) if timeout is not None else deadline - now
        self._unwatched_this_turn.clear()
        for key, events in self.selector.select(timeout):
            fd = key.fd
            if fd in self._unwatched_this_turn:
                continue
            if events & selectors.EVENT_WRITE:
                channel = self._writers.get(fd)
                if channel is not None:
                    self._flush(channel)
            if events & selectors.EVENT_READ:
                callback = self._callbacks.get(fd)
                if callback is not None:
                    callback()
        if self.before_output is not None:
            self.before_output()
        if self._dirty:
            self._flush_dirty()

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for channel in dirty.values():
            if not channel.closed:
                self._flush(channel)

    def _flush(self, channel: Channel) -> None:
        """Send what the socket takes, and watch the channel for what it
        needs next: writable while data waits; readable unless a peer that
        does not read its replies has let too many pile up (then it is not
        read from, so it cannot make the server hold ever more)."""
        try:
            channel.flush()
        except OSError:  # the peer is gone; reading will see it and clean up
            channel.outbox.clear()
            channel.pending_bytes = 0
        fd = channel.fd
        if channel.closed or fd not in self._callbacks:
            return
        if channel.wants_write:
            self._writers[fd] = channel
            events = selectors.EVENT_WRITE
        else:
            self._writers.pop(fd, None)
            events = 0
        if channel.pending_bytes <= OUTBOX_HIGH_WATER:
            events |= selectors.EVENT_READ
        if self._interest.get(fd) != events:
            self.selector.modify(fd, events)
            self._interest[fd] = events

    def close(self) -> None:
        self.selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()
