"""The fork class for a site's views: :func:`get_fork_class` (``f =
get_fork_class()(); f.run(cmd, *args)``), chosen from the settings and
checked again from time to time."""

from __future__ import annotations

import threading

from ..base import ForkBase
from ..exceptions import ColdocTasksBackendUnavailableError
from ..task_utils import BestForkClass, get_backend_fork_class
from .settings import TasksSettings, read_settings

__all__ = ['preferences', 'get_chooser', 'get_fork_class', 'reset', 'backend_unavailable_reason']


_chooser: BestForkClass | None = None


_chooser_lock = threading.Lock()


def preferences(conf: TasksSettings) -> tuple[str, ...]:
    """Which backends the site may use, best first: celery (if a
    celeryconfig is set), coldoc, simple; nofork is the last resort."""
    return (('celery',) if conf.celeryconfig else ()) + ('coldoc', 'simple')


def get_chooser() -> BestForkClass:
    """The site's refreshing chooser (a
    :class:`~coldoc_tasks.task_utils.BestForkClass`), made from the settings
    on first use."""
    global _chooser
    with _chooser_lock:
        if _chooser is None:
            conf = read_settings()
            _chooser = BestForkClass(infofile=conf.infofile, celeryconfig=conf.celeryconfig,
                                     preferences=preferences(conf), refresh_time_interval=60)
        return _chooser


def get_fork_class() -> type[ForkBase]:
    """The fork class to use now, chosen from the settings and checked again
    from time to time: ``f = get_fork_class()(); f.run(cmd, *args)``."""
    return get_chooser().fork_class


def reset() -> None:
    """Forget the chooser (after a server was started, or settings changed)."""
    global _chooser
    with _chooser_lock:
        _chooser = None


def backend_unavailable_reason(name: str, conf: TasksSettings | None = None) -> str | None:
    """Why backend ``name`` cannot be used now, or None if it can."""
    conf = conf or read_settings()
    try:
        get_backend_fork_class(name, infofile=conf.infofile, celeryconfig=conf.celeryconfig)
    except ColdocTasksBackendUnavailableError as exc:
        return str(exc)
    return None
