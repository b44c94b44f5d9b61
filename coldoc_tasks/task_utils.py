"""Choosing a backend at run time.

Each backend lives in a module that provides ``get_fork_class(infofile=None,
celeryconfig=None)``: it returns the backend's fork class, ready to use with
no arguments, or raises :class:`ColdocTasksBackendUnavailableError` saying
why the backend cannot be used now.  ``BACKENDS`` maps backend names to those
modules; ``nofork`` is always available and is the last resort.

:func:`choose_best_fork_class` answers once; a :class:`ForkClassChooser`
keeps answering, and checks again after ``refresh_time_interval`` seconds or
at once when the infofile or the celeryconfig changes or disappears, so that
a long-running program (a web portal) follows servers going down or coming
up without a restart.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from .base import ForkBase
from .exceptions import ColdocTasksBackendUnavailableError, ColdocTasksUsageError
from .simple_tasks import NoFork

__all__ = ['BACKENDS', 'DEFAULT_PREFERENCES', 'ForkClassChooser', 'choose_best_fork_class', 'get_backend_fork_class',
           'parse_preferences']

logger = logging.getLogger(__name__)

#: Backend name -> module that provides ``get_fork_class``.
BACKENDS: dict[str, str] = {
    'celery': 'coldoc_tasks.celery_tasks',
    'coldoc': 'coldoc_tasks.coldoc_tasks',
    'simple': 'coldoc_tasks.simple_tasks',
    'nofork': 'coldoc_tasks.simple_tasks',
}

DEFAULT_PREFERENCES = ('celery', 'coldoc', 'simple')

PathLike = str | os.PathLike


def parse_preferences(preferences: str | Iterable[str]) -> tuple[str, ...]:
    """Turn ``'celery,coldoc'`` or ``['celery', 'coldoc']`` into a tuple of
    known backend names; raise :class:`ColdocTasksUsageError` naming any
    unknown one."""
    if isinstance(preferences, str):
        names = [name.strip() for name in preferences.split(',')]
    else:
        try:
            names = [str(name).strip() for name in preferences]
        except TypeError:
            raise ColdocTasksUsageError(
                f'preferences must be a comma-separated string or a list of backend names, '
                f'not {type(preferences).__name__}') from None
    names = [name for name in names if name]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ColdocTasksUsageError(
            f'unknown backend name(s) {", ".join(map(repr, unknown))} in preferences; '
            f'known backends are {", ".join(BACKENDS)}')
    return tuple(names)


def get_backend_fork_class(name: str, infofile: PathLike | None = None,
                           celeryconfig: PathLike | None = None) -> type[ForkBase]:
    """The fork class of backend ``name``, ready to use; raise
    :class:`ColdocTasksBackendUnavailableError` saying why it cannot be used."""
    (name,) = parse_preferences([name])
    if name == 'nofork':
        return NoFork
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        raise ColdocTasksBackendUnavailableError(f'the {name} backend cannot be imported: {exc}') from exc
    return module.get_fork_class(infofile=infofile, celeryconfig=celeryconfig)


def choose_best_fork_class(infofile: PathLike | None = None, celeryconfig: PathLike | None = None,
                           preferences: str | Iterable[str] = DEFAULT_PREFERENCES) -> tuple[str, type[ForkBase]]:
    """Return ``(name, fork_class)`` for the first backend in ``preferences``
    that works now, or ``('nofork', NoFork)`` if none does.

    ``preferences`` is a sequence of backend names or a comma-separated
    string.  Why each skipped backend was skipped is logged.
    """
    for name in parse_preferences(preferences):
        try:
            fork_class = get_backend_fork_class(name, infofile=infofile, celeryconfig=celeryconfig)
        except ColdocTasksBackendUnavailableError as exc:
            logger.info('backend %s skipped: %s', name, exc)
            continue
        logger.debug('backend %s chosen', name)
        return name, fork_class
    return 'nofork', NoFork


def _file_signature(path: PathLike | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return ('missing',)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ForkClassChooser:
    """The best fork class, kept up to date.

    ::

        chooser = ForkClassChooser(infofile=..., celeryconfig=..., refresh_time_interval=60)
        f = chooser()(use_fork=True)     # the best fork class now
        chooser.name                     # its backend name

    Calling the chooser returns the fork class chosen by
    :func:`choose_best_fork_class`, choosing again when
    ``refresh_time_interval`` seconds (``None``: never) have passed since the
    last choice, or at once when the infofile or the celeryconfig was
    created, changed or removed since.  ``callback(name, fork_class)`` is
    called after every choice that differs from the previous one (the first
    included).  Thread-safe: while one thread chooses, the others go on with
    the previous choice.
    """

    def __init__(self, infofile: PathLike | None = None, celeryconfig: PathLike | None = None,
                 preferences: str | Iterable[str] = DEFAULT_PREFERENCES, refresh_time_interval: float | None = 60.0,
                 callback: Callable[[str, type[ForkBase]], object] | None = None):
        self.infofile = infofile
        self.celeryconfig = celeryconfig
        self.preferences = parse_preferences(preferences)
        if refresh_time_interval is not None and refresh_time_interval < 0:
            raise ValueError(f'refresh_time_interval must be >= 0 seconds or None, not {refresh_time_interval!r}')
        self.refresh_time_interval = refresh_time_interval
        self.callback = callback
        #: The backend name and fork class of the current choice (None before the first).
        self.name: str | None = None
        self.fork_class: type[ForkBase] | None = None
        self._chosen_at = 0.0
        self._signatures: tuple | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f'<{type(self).__name__} {self.name or "(not chosen yet)"} preferences={",".join(self.preferences)}>'

    def __call__(self) -> type[ForkBase]:
        """The best fork class, choosing again if it may have changed."""
        if self.fork_class is not None and not self._stale():
            return self.fork_class
        if not self._lock.acquire(blocking=self.fork_class is None):
            return self.fork_class  # another thread is choosing
        try:
            if self.fork_class is None or self._stale():
                self._choose()
            return self.fork_class
        finally:
            self._lock.release()

    def refresh(self) -> tuple[str, type[ForkBase]]:
        """Choose again now; return ``(name, fork_class)``."""
        with self._lock:
            self._choose()
            return self.name, self.fork_class

    def _current_signatures(self) -> tuple:
        return (_file_signature(self.infofile), _file_signature(self.celeryconfig))

    def _stale(self) -> bool:
        interval = self.refresh_time_interval
        if interval is not None and time.monotonic() - self._chosen_at >= interval:
            return True
        return self._current_signatures() != self._signatures

    def _choose(self) -> None:
        signatures = self._current_signatures()
        name, fork_class = choose_best_fork_class(self.infofile, self.celeryconfig, self.preferences)
        self._signatures = signatures
        self._chosen_at = time.monotonic()
        changed = name != self.name
        if changed:
            logger.info('backend %s chosen (was %s)', name, self.name)
        self.name, self.fork_class = name, fork_class
        if changed and self.callback is not None:
            try:
                self.callback(name, fork_class)
            except Exception:
                logger.exception('the callback of %r failed', self)
