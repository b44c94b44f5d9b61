"""Drawing on a terminal: progress bars, a block of lines redrawn in place,
and a transient note on stderr while a command waits.

Everything here writes ANSI sequences only to a stream that is a terminal;
to anything else it writes plain lines (or, for a note, nothing), so that
pipes and logs never hold escape codes.
"""

from __future__ import annotations

import os
import shutil
from typing import TextIO

__all__ = ['is_terminal', 'terminal_size', 'progress_bar', 'Screen', 'LiveLines', 'WaitNote', 'CLEAR_SCREEN']

#: Cursor home, then erase the whole screen.
CLEAR_SCREEN = '\033[H\033[2J'
_HOME = '\033[H'
_ERASE_LINE = '\033[K'
_ERASE_BELOW = '\033[J'


def is_terminal(stream: TextIO) -> bool:
    """True if ``stream`` is open on a terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def progress_bar(done: float, total: float | None, width: int = 24) -> str:
    """``[#########---------------]``: ``done`` out of ``total``; with no
    ``total`` (or 0), a bar of ``?`` since the fraction is unknown."""
    if not total:
        return '[' + '?' * width + ']'
    filled = round(width * min(max(done / total, 0.0), 1.0))
    return '[' + '#' * filled + '-' * (width - filled) + ']'


def terminal_size(stream: TextIO) -> os.terminal_size:
    """The size of the terminal of ``stream`` (the usual fallback, 80 by
    24, when it cannot be told)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return shutil.get_terminal_size()
    return size if size.columns and size.lines else shutil.get_terminal_size()


def _fit(lines: list[str], stream: TextIO) -> list[str]:
    """The lines cut to the terminal's size, so that a redraw never scrolls."""
    columns, rows = terminal_size(stream)
    return [line[:columns] for line in lines[:max(1, rows - 1)]]


class Screen:
    """The whole screen of a terminal, redrawn in place (as ``watch(1)``
    does); on another stream each :meth:`show` prints its text followed by
    a blank line."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.terminal = is_terminal(stream)
        self._drawn = False

    def show(self, text: str) -> None:
        """Replace what is on the screen with ``text``."""
        if not self.terminal:
            self.stream.write(f'{text}\n\n')
        else:
            # The first draw clears the screen; later ones overwrite each line
            # and erase what is left, which does not flicker.
            start = _HOME if self._drawn else CLEAR_SCREEN
            self.stream.write(start + ''.join(f'{line}{_ERASE_LINE}\n' for line in _fit(text.splitlines(), self.stream))
                              + _ERASE_BELOW)
            self._drawn = True
        self.stream.flush()


class LiveLines:
    """A block of lines at the bottom of a terminal, redrawn in place (the
    cursor goes back up over the previous drawing).  Not on a terminal,
    :meth:`draw` prints only the lines that changed since the last draw."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.terminal = is_terminal(stream)
        self._previous: list[str] = []

    def draw(self, lines: list[str]) -> None:
        """Show ``lines`` in place of the previous ones."""
        if self.terminal:
            up = f'\033[{len(self._previous)}A\r' if self._previous else ''
            columns = terminal_size(self.stream).columns
            self.stream.write(up + ''.join(f'{line[:columns - 1]}{_ERASE_LINE}\n' for line in lines) + _ERASE_BELOW)
        else:
            old = set(self._previous)
            self.stream.write(''.join(f'{line}\n' for line in lines if line not in old))
        self._previous = list(lines)
        self.stream.flush()


class WaitNote:
    """One line on a terminal saying what a command waits for, replaced by
    the next note and erased by :meth:`clear` (so that the command's own
    output follows as it would without it).  On a stream that is not a
    terminal it writes nothing: scripts read the final line only."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.terminal = is_terminal(stream)
        self._shown = False

    def __call__(self, text: str) -> None:
        if self.terminal:
            columns = terminal_size(self.stream).columns  # a wrapped note could not be erased
            self.stream.write(f'\r{_ERASE_LINE}{text[:columns - 1]}')
            self.stream.flush()
            self._shown = True

    def clear(self) -> None:
        """Erase the note, if one is shown."""
        if self._shown:
            self.stream.write(f'\r{_ERASE_LINE}')
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> WaitNote:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.clear()
