"""Choosing a backend at run time.

Each backend lives in a module that provides ``get_fork_class(infofile=None,
celeryconfig=None)``: it returns the backend's fork class, ready to use with
no arguments, or raises :class:`ColdocTasksBackendUnavailableError` saying
why the backend cannot be used now.  ``BACKENDS`` maps backend names to those
modules; ``nofork`` is always available and is the last resort.

:func:`choose_best_fork_class` returns a :class:`BestForkClass`: unpacked,
it is the pair ``(name, fork_class)`` of the best backend now; called, it is
a fork class that keeps choosing, again after ``refresh_time_interval``
seconds or at once when the infofile or the celeryconfig changes or
disappears, so that a long-running program (a web portal) follows servers
going down or coming up without a restart.

Also here: :func:`proc_join` (wait for a server process started in the
background) and :func:`format_exception`.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .base import ForkBase, check_timeout
from .coldoc.infofile import read_infofile
from .exceptions import ColdocTasksBackendUnavailableError, ColdocTasksUsageError, InfofileError
from .processes import proc_join
from .selfcheck import run_checks
from .simple_tasks import NoFork

__all__ = ['BACKENDS', 'DEFAULT_PREFERENCES', 'DEFAULT_REFRESH_INTERVAL', 'BestForkClass', 'ForkClassChooser',
           'all_fork_classes', 'choose_best_fork_class', 'format_exception', 'get_backend_fork_class',
           'parse_preferences', 'proc_join', 'test_fork']

logger = logging.getLogger(__name__)

#: Backend name -> module that provides ``get_fork_class``.
BACKENDS: dict[str, str] = {
    'celery': 'coldoc_tasks.celery.fork',
    'coldoc': 'coldoc_tasks.coldoc.fork',
    'simple': 'coldoc_tasks.simple_tasks',
    'nofork': 'coldoc_tasks.simple_tasks',
}

#: Every backend name, best first.
all_fork_classes: tuple[str, ...] = tuple(BACKENDS)

DEFAULT_PREFERENCES = ('celery', 'coldoc', 'simple')
#: Seconds after which :class:`BestForkClass` checks again which backend works.
DEFAULT_REFRESH_INTERVAL = 120.0

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


def _choose_once(infofile: PathLike | None, celeryconfig: PathLike | None,
                 preferences: tuple[str, ...]) -> tuple[str, type[ForkBase]]:
    """``(name, fork_class)`` of the first backend in ``preferences`` that
    works now, or ``('nofork', NoFork)`` if none does; why each skipped
    backend was skipped is logged."""
    for name in preferences:
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


def _process_ended(pid: int) -> bool:
    try:
        # a child of ours (a server this process started) is a zombie until reaped: look, do not reap
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:  # a zombie answers kill(); Linux says what it is
        with open(f'/proc/{pid}/stat', 'rb') as stream:
            return stream.read().rpartition(b')')[2].split()[:1] == [b'Z']
    except OSError:
        return False


class BestForkClass:
    """The best fork class now, kept up to date; what
    :func:`choose_best_fork_class` returns.

    Two ways to use it::

        name, fork_class = choose_best_fork_class(infofile, celeryconfig)  # one answer, now
        chooser = choose_best_fork_class(infofile, celeryconfig, callback=cb)
        f = chooser(use_fork=True)        # a fork object of the best backend now
        chooser.fork_type                 # that backend's name

    Unpacked (or indexed, or compared with a tuple) it is the pair ``(name,
    fork_class)`` of the current choice.  Called, it is a fork class: it
    returns a fork object of the backend that works now.

    The choice is made on first use, and made again when
    ``refresh_time_interval`` seconds (``None``: never) have passed since
    the last one, or at once when the infofile or the celeryconfig was
    created, changed or removed since, or when the coldoc server chosen has
    stopped (its socket is gone, or its process): once a server has
    stopped, the next call already chooses another backend.  ``callback(fork_class)`` is called
    with the class chosen after every choice (``fork_class.fork_type`` is its
    name); an exception it raises is logged, not raised.

    Thread-safe: while one thread chooses, the others go on with the previous
    choice.  It pickles as its arguments, so a copy sent to another process
    (into a task, for example) chooses again where it lands; the callback,
    if any, must then be picklable too (a module-level function).
    """

    def __init__(self, infofile: PathLike | None = None, celeryconfig: PathLike | None = None,
                 preferences: str | Iterable[str] = DEFAULT_PREFERENCES,
                 refresh_time_interval: float | None = DEFAULT_REFRESH_INTERVAL,
                 callback: Callable[[type[ForkBase]], object] | None = None):
        if refresh_time_interval is not None:
            check_timeout(refresh_time_interval, 'refresh_time_interval')
        if callback is not None and not callable(callback):
            raise TypeError(f'callback must be callable, not {type(callback).__name__}')
        self.infofile = infofile
        self.celeryconfig = celeryconfig
        self.preferences = parse_preferences(preferences)
        self.refresh_time_interval = refresh_time_interval
        self.callback = callback
        self._name: str | None = None
        self._fork_class: type[ForkBase] | None = None
        self._chosen_at = 0.0
        self._signatures: tuple | None = None
        self._server: tuple[str, tuple | None, int | None] | None = None  # the coldoc server chosen
        self._lock = threading.Lock()

    # -- the current choice ---------------------------------------------------------

    def current(self) -> tuple[str, type[ForkBase]]:
        """``(name, fork_class)`` of the best backend now, choosing again if
        it may have changed."""
        choice = self._name, self._fork_class
        if choice[1] is not None and not self._stale():
            return choice
        if not self._lock.acquire(blocking=choice[1] is None):
            return choice  # another thread is choosing; go on with the previous choice
        try:
            if self._fork_class is None or self._stale():
                self._choose()
            return self._name, self._fork_class
        finally:
            self._lock.release()

    def refresh(self) -> tuple[str, type[ForkBase]]:
        """Choose again now; return ``(name, fork_class)``."""
        with self._lock:
            self._choose()
            return self._name, self._fork_class

    @property
    def fork_type(self) -> str:
        """The name of the backend chosen now (``'celery'``, ``'coldoc'``,
        ``'simple'`` or ``'nofork'``)."""
        return self.current()[0]

    @property
    def fork_class(self) -> type[ForkBase]:
        """The fork class chosen now."""
        return self.current()[1]

    def can_fork(self) -> bool:
        """True if the backend chosen now runs tasks in another process."""
        return self.current()[1].can_fork()

    def __call__(self, *args: Any, **kwargs: Any) -> ForkBase:
        """A fork object of the backend chosen now: the same arguments as any
        fork class (``use_fork``, ``timeout``, ``queue``)."""
        return self.current()[1](*args, **kwargs)

    # -- the (name, fork_class) pair --------------------------------------------------

    def __iter__(self) -> Iterator:
        return iter(self.current())

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int | slice) -> Any:
        return self.current()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, tuple):
            return self.current() == other
        return NotImplemented

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return (f'<{type(self).__name__} {self._name or "(not chosen yet)"} '
                f'preferences={",".join(self.preferences)}>')

    def __reduce__(self) -> tuple:
        return type(self), (self.infofile, self.celeryconfig, self.preferences, self.refresh_time_interval,
                            self.callback)

    # -- choosing -------------------------------------------------------------------

    def _current_signatures(self) -> tuple:
        return (_file_signature(self.infofile), _file_signature(self.celeryconfig))

    def _stale(self) -> bool:
        interval = self.refresh_time_interval
        if interval is not None and time.monotonic() - self._chosen_at >= interval:
            return True
        return self._current_signatures() != self._signatures or self._server_gone()

    def _server_gone(self) -> bool:
        if self._server is None:
            return False
        socket_path, signature, pid = self._server
        if _file_signature(socket_path) != signature:
            return True  # stopped (it removes its socket), or another server took its place
        return pid is not None and _process_ended(pid)  # killed: its socket is left behind

    def _remember_server(self, name: str) -> None:
        self._server = None
        if name != 'coldoc' or self.infofile is None:
            return
        try:
            info = read_infofile(self.infofile)
            socket_path, pid = os.fspath(info['socket']), info.get('pid')
        except (InfofileError, KeyError, TypeError):
            return
        self._server = (socket_path, _file_signature(socket_path), pid if isinstance(pid, int) else None)

    def _choose(self) -> None:
        signatures = self._current_signatures()
        name, fork_class = _choose_once(self.infofile, self.celeryconfig, self.preferences)
        self._remember_server(name)
        self._signatures = signatures
        self._chosen_at = time.monotonic()
        if name != self._name:
            logger.info('backend %s chosen (was %s)', name, self._name)
        self._name, self._fork_class = name, fork_class
        self._chosen(name, fork_class)

    def _chosen(self, name: str, fork_class: type[ForkBase]) -> None:
        if self.callback is not None:
            try:
                self.callback(fork_class)
            except Exception:
                logger.exception('the callback of %r failed', self)


#: ``choose_best_fork_class(...)`` makes a :class:`BestForkClass`.
choose_best_fork_class = BestForkClass


class ForkClassChooser(BestForkClass):
    """The refreshing chooser in its earlier form: calling it with no
    arguments returns the fork class chosen now (not a fork object), and
    ``callback(name, fork_class)`` is called only when the choice changes.
    New code uses :func:`choose_best_fork_class` directly."""

    def __init__(self, infofile: PathLike | None = None, celeryconfig: PathLike | None = None,
                 preferences: str | Iterable[str] = DEFAULT_PREFERENCES, refresh_time_interval: float | None = 60.0,
                 callback: Callable[[str, type[ForkBase]], object] | None = None):
        super().__init__(infofile, celeryconfig, preferences, refresh_time_interval, callback)
        self._previous_name: str | None = None

    @property
    def name(self) -> str | None:
        """The backend name of the current choice (None before the first)."""
        return self._name

    def __call__(self) -> type[ForkBase]:  # type: ignore[override]
        """The fork class chosen now."""
        return self.current()[1]

    def _chosen(self, name: str, fork_class: type[ForkBase]) -> None:
        changed, self._previous_name = name != self._previous_name, name
        if changed and self.callback is not None:
            try:
                self.callback(name, fork_class)
            except Exception:
                logger.exception('the callback of %r failed', self)


# -- helpers ------------------------------------------------------------------------


def format_exception(exc: BaseException, *args: Any, **kwargs: Any) -> list[str]:
    """The traceback of ``exc`` as a list of str, as
    :func:`traceback.format_exception` formats it (extra arguments are
    passed on)."""
    return traceback.format_exception(type(exc), exc, exc.__traceback__, *args, **kwargs)


def test_fork(fork_class: Callable[..., ForkBase], print_: Callable[[str], object] = print) -> int:
    """Run the self-check of the fork-class contract with fork objects made
    by ``fork_class()`` (a fork class, or a ``functools.partial`` of one);
    print a line per check with ``print_``; return the number of failures."""
    return run_checks(fork_class, out=print_)


def fork_reentrant_test(fork_class: Callable[..., ForkBase], depth: int = 3, sleep: float = 0.1) -> Any:
    """A task that runs itself as a subtask ``depth`` times with
    ``fork_class``; at the bottom it sleeps ``sleep`` seconds and the chain
    returns ``'happy'``, or, with ``sleep <= 0``, raises ``ValueError``,
    which reaches the top.  Each level waits at most ``2 * sleep + 3``
    seconds."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f'depth must be an int >= 0, not {depth!r}')
    f = fork_class()
    if depth > 0:
        f.run(fork_reentrant_test, fork_class, depth - 1, sleep)
    elif sleep > 0:
        f.run(time.sleep, sleep)
    else:
        raise ValueError('raised on purpose at the bottom of the chain')
    value = f.wait(timeout=2.0 * sleep + 3.0)
    return 'happy' if depth == 0 else value


#: coldoc_tasks 0.2's name of :func:`fork_reentrant_test`, which its tests import.
globals()['__fork_reentrat_test'] = fork_reentrant_test
