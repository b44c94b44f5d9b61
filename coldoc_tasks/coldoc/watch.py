"""``coldoc_tasks_cli coldoc status --watch``: the status, again and again.

Every ``interval`` seconds the server is asked for its status, which is
drawn in place on a terminal (see :class:`coldoc_tasks.terminal.Screen`)
or, on a pipe or a file, printed after the previous one with a blank line
between them.  Ctrl-C (SIGINT) or SIGTERM ends it quietly, with status 0.

A server that does not answer is said once, on stderr (and on the screen
of a terminal), and asked again every interval: a server restarted on the
same infofile is shown again as soon as it answers.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from typing import TextIO

from ..exceptions import ColdocTasksException
from ..terminal import Screen
from .control import status
from .infofile import PathLike
from .report import format_status

__all__ = ['watch_status']


class _Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while the watch was waiting."""


class _Signals:
    """SIGINT and SIGTERM end the watch: at once while it waits (for the
    interval or for the server's answer), after the write while it writes,
    so that no status is ever cut in half."""

    def __init__(self):
        self.stop = False
        self.interruptible = False
        self._previous: dict[int, object] = {}

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stop = True
        if self.interruptible:
            raise _Stopped

    def __enter__(self) -> _Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if a signal ends the watch."""
        self.interruptible = True
        try:
            if not self.stop:
                select.select([], [], [], max(0.0, seconds))  # a signal interrupts it through _on_signal
        finally:
            self.interruptible = False


def watch_status(infofile: PathLike, interval: float = 1.0, timeout: float = 5.0, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Show the status of the server of ``infofile`` every ``interval``
    seconds until SIGINT or SIGTERM; return 0 (the exit status).  Must run in
    the main thread (it handles those signals while it runs)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    screen = Screen(out)
    said = None  # why the server did not answer, once said
    try:
        with _Signals() as signals:
            while not signals.stop:
                started = time.monotonic()
                signals.interruptible = True
                try:
                    info = status(infofile, timeout=timeout)
                    why = None
                except ColdocTasksException as exc:
                    info, why = None, str(exc)
                finally:
                    signals.interruptible = False
                if info is not None:
                    said = None
                    screen.show(f'every {interval:g} s, Ctrl-C to stop\n\n{format_status(info)}'
                                if screen.terminal else format_status(info))
                elif said is None:
                    said = why
                    note = (f'no answer from the task server of {infofile}: {why}; '
                            f'asking again every {interval:g} s')
                    if screen.terminal:
                        screen.show(f'{note}\n\nCtrl-C to stop')
                    print(f'coldoc_tasks_cli: {note}', file=err, flush=True)
                signals.pause(interval - (time.monotonic() - started))
    except _Stopped:
        pass
    except BrokenPipeError:  # the reader went (``status --watch | head``): nothing more to show
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())  # so that the flush at exit does not fail again
        os.close(devnull)
        return 0
    if screen.terminal:
        out.write('\n')
        out.flush()
    return 0
