"""The ``COLDOC_TASKS_*`` settings of a Django site, read and checked once
(:func:`read_settings` -> :class:`TasksSettings`).  The rest of the Django
integration: :mod:`.autostart` (starting the servers), :mod:`.server` (a
coldoc server with Django set up), :mod:`.forks` (the fork class for views),
:mod:`.checks` and :mod:`.cli`.

Django is imported only by the functions that need it, so that importing
this package does not set Django up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from typing import Any

from ..coldoc.options import SERVER_OPTIONS
from ..coldoc.queues import QueueConfig
from ..exceptions import ColdocTasksOptionError, ColdocTasksSettingsError

__all__ = [
    'AUTOSTART_OPTIONS_ENV', 'AUTOSTART_ENV', 'AUTOSTART_NAMES', 'SERVER_MODULE', 'ColdocTasksSettingsError',
    'TasksSettings', 'read_settings', 'parse_autostart', 'parse_pythonpath', 'parse_server_options', 'parse_queues',
    'default_infofile_directory',
]

logger = logging.getLogger(__name__)

#: The environment variable that allows autostarting in this process: ``autostart``
#: or ``all`` allow every server the settings list, else a comma-separated list of names.
AUTOSTART_OPTIONS_ENV = 'COLDOC_TASKS_AUTOSTART_OPTIONS'
#: The same flag as coldoc_tasks 0.2 spells it (``all``, or a list of names).
AUTOSTART_ENV = 'COLDOC_TASKS_AUTOSTART'
#: What ``COLDOC_TASKS_AUTOSTART`` may list.
AUTOSTART_NAMES = ('coldoc', 'celery')
#: The module whose ``__main__`` runs a coldoc server for a Django site.
SERVER_MODULE = 'coldoc_tasks.django.server'


@dataclasses.dataclass(frozen=True)
class TasksSettings:
    """The ``COLDOC_TASKS_*`` settings of a site, normalised (paths are
    absolute ``str``; ``None`` where unset)."""

    infofile: str
    socket: str | None
    password: bytes | None
    celeryconfig: str | None
    autostart: tuple[str, ...]
    logfile: str | None
    pythonpath: tuple[str, ...]
    #: the settings module, which a started server imports
    settings_module: str | None
    #: True when COLDOC_TASKS_INFOFILE is unset and the per-site temporary one is used
    default_infofile: bool = False
    #: ``COLDOC_TASKS_COLDOC_LOGFILE`` and ``COLDOC_TASKS_CELERY_LOGFILE``, if set
    coldoc_logfile_setting: str | None = None
    celery_logfile_setting: str | None = None
    #: the server options set as ``COLDOC_TASKS_<OPTION>`` (checked; see coldoc_tasks.coldoc.options)
    server_options: dict = dataclasses.field(default_factory=dict)
    #: ``COLDOC_TASKS_QUEUES``: the queues of an autostarted server (none: its default queue only)
    queues: tuple = ()

    @property
    def coldoc_logfile(self) -> str | None:
        """The log of an autostarted coldoc server: ``COLDOC_TASKS_COLDOC_LOGFILE``,
        else ``COLDOC_TASKS_LOGFILE``."""
        return self.coldoc_logfile_setting or self.logfile

    @property
    def celery_logfile(self) -> str | None:
        """The log of an autostarted Celery worker: ``COLDOC_TASKS_CELERY_LOGFILE``,
        else beside the server's log."""
        if self.celery_logfile_setting:
            return self.celery_logfile_setting
        if not self.logfile:
            return None
        root, ext = os.path.splitext(self.logfile)
        return f'{root}-celery{ext or ".log"}'


def _path(name: str, value: Any) -> str | None:
    if value is None or value == '':
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ColdocTasksSettingsError(f'{name} must be a str or a pathlib.Path, not {type(value).__name__}')
    return os.path.abspath(os.fspath(value))


def parse_pythonpath(value: Any) -> tuple[str, ...]:
    """``COLDOC_TASKS_PYTHONPATH``: a path or a list of paths, as absolute ``str``."""
    if value is None or value == '':
        return ()
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    if not isinstance(value, Iterable):
        raise ColdocTasksSettingsError(
            f'COLDOC_TASKS_PYTHONPATH must be a path or a list of paths, not {type(value).__name__}')
    return tuple(_path('each entry of COLDOC_TASKS_PYTHONPATH', entry) for entry in value if entry)


def parse_autostart(value: Any, celeryconfig: str | None = None) -> tuple[str, ...]:
    """``COLDOC_TASKS_AUTOSTART``: ``'coldoc,celery'``, a list of names, or
    ``True`` (coldoc, and celery if a celeryconfig is set); raise
    :class:`ColdocTasksSettingsError` naming any unknown name."""
    if value is None or value is False or value == '':
        return ()
    if value is True:
        return ('coldoc', 'celery') if celeryconfig else ('coldoc',)
    if isinstance(value, str):
        names = [name.strip() for name in value.split(',')]
    elif isinstance(value, Iterable):
        names = [str(name).strip() for name in value]
    else:
        raise ColdocTasksSettingsError(
            f'COLDOC_TASKS_AUTOSTART must be a comma-separated str or a list of names, not {type(value).__name__}')
    names = [name for name in names if name]
    unknown = [name for name in names if name not in AUTOSTART_NAMES]
    if unknown:
        raise ColdocTasksSettingsError(
            f'COLDOC_TASKS_AUTOSTART lists unknown server(s) {", ".join(map(repr, unknown))}; '
            f'known are {", ".join(AUTOSTART_NAMES)}')
    return tuple(dict.fromkeys(names))


def parse_server_options(settings: Any) -> dict[str, Any]:
    """The server options the settings set (``COLDOC_TASKS_RESULT_RETENTION``,
    ``COLDOC_TASKS_MAX_MESSAGE_SIZE``, ...), checked against their ranges;
    raise :class:`ColdocTasksSettingsError` naming a bad one."""
    found = {}
    for option in SERVER_OPTIONS:
        value = getattr(settings, option.setting, None)
        if value is None:
            continue
        try:
            found[option.name] = option.check(value, option.setting)
        except ColdocTasksOptionError as exc:
            raise ColdocTasksSettingsError(str(exc)) from None
    return found


def parse_queues(value: Any) -> tuple:
    """``COLDOC_TASKS_QUEUES``: the queues of the site's server, as
    ``'NAME[:CONCURRENCY[:MODE[:MAX_TASKS]]]'`` specs (a list, or one str
    with commas) or :class:`~coldoc_tasks.coldoc.queues.QueueConfig`;
    ``'*:N'`` accepts any other queue name, all sharing N slots.  Raise
    :class:`ColdocTasksSettingsError` naming a bad one."""
    if value is None or value == '':
        return ()
    if isinstance(value, (str, QueueConfig)):
        value = value.split(',') if isinstance(value, str) else [value]
    if not isinstance(value, Iterable):
        raise ColdocTasksSettingsError(
            f'COLDOC_TASKS_QUEUES must be a list of queue specs such as "pdf:1:fresh", not {type(value).__name__}')
    queues = []
    for spec in value:
        try:
            queues.append(spec if isinstance(spec, QueueConfig) else QueueConfig.parse(str(spec).strip()))
        except ValueError as exc:
            raise ColdocTasksSettingsError(f'COLDOC_TASKS_QUEUES: {exc}') from None
    names = [queue.name for queue in queues]
    if len(set(names)) != len(names):
        raise ColdocTasksSettingsError(f'COLDOC_TASKS_QUEUES declares a queue twice: {", ".join(names)}')
    return tuple(queues)


def default_infofile_directory(settings_module: str | None, settings_file: str | None) -> str:
    """The private temporary directory of a site's default infofile: the
    same for every process of the site (so that they share one server),
    different for different sites and users."""
    key = f'{settings_module}\0{settings_file}'.encode()
    digest = hashlib.sha256(key).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f'coldoc-tasks-{os.getuid()}-{digest}')


def _private_directory(path: str) -> str:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ColdocTasksSettingsError(
                f'{path} is not a private directory of this user: set COLDOC_TASKS_INFOFILE') from None
    return path


def read_settings(settings: Any = None) -> TasksSettings:
    """Read the ``COLDOC_TASKS_*`` settings (of ``django.conf.settings`` by
    default); raise :class:`ColdocTasksSettingsError` for a value that cannot
    be used.  With no ``COLDOC_TASKS_INFOFILE``, the infofile goes to a
    private temporary directory of the site (created here)."""
    if settings is None:
        from django.conf import settings
    get = lambda name: getattr(settings, name, None)  # noqa: E731
    settings_module = getattr(settings, 'SETTINGS_MODULE', None) or os.environ.get('DJANGO_SETTINGS_MODULE')
    celeryconfig = _path('COLDOC_TASKS_CELERYCONFIG', get('COLDOC_TASKS_CELERYCONFIG'))
    infofile = _path('COLDOC_TASKS_INFOFILE', get('COLDOC_TASKS_INFOFILE'))
    default = infofile is None
    if default:
        module = sys.modules.get(settings_module or '')
        settings_file = getattr(module, '__file__', None)
        directory = default_infofile_directory(settings_module, settings_file and os.path.realpath(settings_file))
        infofile = os.path.join(_private_directory(directory), 'infofile')
    password = get('COLDOC_TASKS_PASSWORD')
    if password is not None and not isinstance(password, (str, bytes)):
        raise ColdocTasksSettingsError(f'COLDOC_TASKS_PASSWORD must be a str or bytes, not {type(password).__name__}')
    return TasksSettings(
        infofile=infofile,
        socket=_path('COLDOC_TASKS_SOCKET', get('COLDOC_TASKS_SOCKET')),
        password=password.encode('utf-8') if isinstance(password, str) else (password or None),
        celeryconfig=celeryconfig,
        autostart=parse_autostart(get('COLDOC_TASKS_AUTOSTART'), celeryconfig),
        logfile=_path('COLDOC_TASKS_LOGFILE', get('COLDOC_TASKS_LOGFILE')),
        coldoc_logfile_setting=_path('COLDOC_TASKS_COLDOC_LOGFILE', get('COLDOC_TASKS_COLDOC_LOGFILE')),
        celery_logfile_setting=_path('COLDOC_TASKS_CELERY_LOGFILE', get('COLDOC_TASKS_CELERY_LOGFILE')),
        server_options=parse_server_options(settings),
        queues=parse_queues(get('COLDOC_TASKS_QUEUES')),
        pythonpath=parse_pythonpath(get('COLDOC_TASKS_PYTHONPATH')),
        settings_module=settings_module,
        default_infofile=default,
    )


# -- autostart ---------------------------------------------------------------------


















# -- inside a started server ---------------------------------------------------------










# -- the fork class for views ---------------------------------------------------------











