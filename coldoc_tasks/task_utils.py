"""Choosing a backend at run time.

Each backend lives in a module that provides ``get_fork_class(infofile=None,
celeryconfig=None)``: it returns the backend's fork class, ready to use with
no arguments, or raises :class:`ColdocTasksBackendUnavailableError` saying
why the backend cannot be used now.  ``BACKENDS`` maps backend names to those
modules; ``nofork`` is always available and is the last resort.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable

from .base import ForkBase
from .exceptions import ColdocTasksBackendUnavailableError, ColdocTasksUsageError
from .simple_tasks import NoFork

__all__ = ['BACKENDS', 'DEFAULT_PREFERENCES', 'choose_best_fork_class', 'get_backend_fork_class', 'parse_preferences']

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
