"""Django integration: the ``COLDOC_TASKS_*`` settings, safe autostart, and
the fork class for views.

::

    settings.py                 web process (wsgi.py / manage.py runserver)
    COLDOC_TASKS_AUTOSTART      AppConfig.ready()
    COLDOC_TASKS_INFOFILE ...     autostart(): for each name listed in the setting
           |                      and allowed by $COLDOC_TASKS_AUTOSTART_OPTIONS,
           v                      unless it already answers (under a file lock):
    read_settings() -------->       coldoc: python -m coldoc_tasks.django_cli start ...
                                      -> server_main(): django.setup() once, DB hooks,
                                         then the ordinary coldoc server
                                    celery: celery_tasks.autostart(env=...)
                                      -> Celery's own Django fix-up sets Django up
    view: get_fork_class()() --> the refreshing chooser over the same settings

Nothing started here autostarts anything: the environment of what is started
loses ``COLDOC_TASKS_AUTOSTART_OPTIONS``, and a coldoc server also has
``COLDOC_TASKS_IN_SERVER`` set.

Workers never share a database connection: the server closes its
connections before forking a worker, and a worker closes its own before and
after every task (see :func:`install_database_hooks`).

Django is imported only by the functions that need it, so that importing this
module does not set Django up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .base import ForkBase
from .daemon import tasks_daemon_autostart, tasks_daemon_start
from .exceptions import ColdocTasksBackendUnavailableError, ColdocTasksException
from .server.main import IN_SERVER_ENV

if TYPE_CHECKING:
    from .task_utils import BestForkClass

__all__ = [
    'AUTOSTART_OPTIONS_ENV', 'AUTOSTART_ENV', 'AUTOSTART_NAMES', 'ColdocTasksSettingsError', 'TasksSettings',
    'read_settings', 'autostart_allowed', 'autostart',
    'autostart_coldoc', 'autostart_celery', 'start_coldoc_daemon', 'server_environment', 'server_main',
    'install_database_hooks', 'get_chooser', 'get_fork_class', 'reset',
]

logger = logging.getLogger(__name__)

#: The environment variable that allows autostarting in this process: ``autostart``
#: or ``all`` allow every server the settings list, else a comma-separated list of names.
AUTOSTART_OPTIONS_ENV = 'COLDOC_TASKS_AUTOSTART_OPTIONS'
#: The same flag as coldoc_tasks 0.2 spells it (``all``, or a list of names).
AUTOSTART_ENV = 'COLDOC_TASKS_AUTOSTART'
#: What ``COLDOC_TASKS_AUTOSTART`` may list.
AUTOSTART_NAMES = ('coldoc', 'celery')
_ALLOW_ALL = ('autostart', 'all')
#: The module whose ``__main__`` runs a coldoc server for a Django site.
SERVER_MODULE = 'coldoc_tasks.django_cli'


class ColdocTasksSettingsError(ColdocTasksException):
    """A ``COLDOC_TASKS_*`` setting has a value that cannot be used."""


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
    #: the server options set as ``COLDOC_TASKS_<OPTION>`` (checked; see coldoc_tasks.server.options)
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
    from .server.options import SERVER_OPTIONS, ColdocTasksOptionError

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
    with commas) or :class:`~coldoc_tasks.server.workers.QueueConfig`;
    ``'*:N'`` accepts any other queue name, all sharing N slots.  Raise
    :class:`ColdocTasksSettingsError` naming a bad one."""
    from .server.workers import QueueConfig

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


def _words(environ: Any, name: str) -> set[str]:
    return {word.strip() for word in environ.get(name, '').split(',')} - {''}


def autostart_allowed(name: str, environ: dict | None = None) -> bool:
    """True if the environment of this process allows autostarting server
    ``name`` (and this process is not a task server).

    Either flag allows it: ``$COLDOC_TASKS_AUTOSTART_OPTIONS`` (this
    package's documented form) or ``$COLDOC_TASKS_AUTOSTART`` (coldoc_tasks
    0.2's), each ``autostart`` or ``all`` or a comma-separated list of
    names; the keyword ``noautostart`` in ``$COLDOC_TASKS_AUTOSTART_OPTIONS``
    forbids it.
    """
    environ = os.environ if environ is None else environ
    if environ.get(IN_SERVER_ENV):
        return False
    options = _words(environ, AUTOSTART_OPTIONS_ENV)
    if 'noautostart' in options:
        return False
    words = options | _words(environ, AUTOSTART_ENV)
    return name in words or any(word in words for word in _ALLOW_ALL)


def server_environment(conf: TasksSettings, environ: dict | None = None) -> dict[str, str]:
    """The environment of a server started for the site: it imports the
    site's settings and code, and never autostarts anything itself."""
    env = dict(os.environ if environ is None else environ)
    env.pop(AUTOSTART_OPTIONS_ENV, None)
    env.pop(AUTOSTART_ENV, None)
    env.pop(IN_SERVER_ENV, None)
    if not conf.settings_module:
        raise ColdocTasksSettingsError(
            'a server for a Django site needs its settings module: set DJANGO_SETTINGS_MODULE')
    env['DJANGO_SETTINGS_MODULE'] = conf.settings_module
    paths = [*conf.pythonpath, *([env['PYTHONPATH']] if env.get('PYTHONPATH') else [])]
    if paths:
        env['PYTHONPATH'] = os.pathsep.join(paths)
    return env


def start_coldoc_daemon(conf: TasksSettings, *, extra_args: Iterable[str] = (), timeout: float = 30.0) -> int:
    """Start a coldoc server for the site in the background (it runs
    ``django.setup()`` first, see :func:`server_main`); return its pid once
    it serves.  Raise :class:`~coldoc_tasks.daemon.ColdocTasksStartError`
    with its output if it cannot start (one already runs, for example)."""
    return tasks_daemon_start(conf.infofile, conf.socket, conf.password, logfile=conf.coldoc_logfile,
                              env=server_environment(conf), server_module=SERVER_MODULE,
                              extra_args=extra_args, timeout=timeout, queues=conf.queues, **conf.server_options)


def autostart_coldoc(conf: TasksSettings, timeout: float = 30.0) -> int:
    """Make sure a coldoc server serves the site: start one unless one
    answers (race-free: many processes at once start one).  Return its pid."""
    pid = tasks_daemon_autostart(conf.infofile, conf.socket, conf.password, logfile=conf.coldoc_logfile,
                                 env=server_environment(conf), server_module=SERVER_MODULE, timeout=timeout,
                                 queues=conf.queues, **conf.server_options)
    logger.info('autostart: coldoc task server for %s: pid %d', conf.infofile, pid)
    return pid


def autostart_celery(conf: TasksSettings, timeout: float = 60.0) -> int | None:
    """Make sure a Celery worker serves the site's celeryconfig: start one
    unless one answers.  Return the pid of the worker started, or None.

    The worker gets ``DJANGO_SETTINGS_MODULE``, so Celery's own Django
    fix-up sets Django up in it and closes database connections around tasks.
    """
    from . import celery_tasks

    if not conf.celeryconfig:
        raise ColdocTasksSettingsError('COLDOC_TASKS_AUTOSTART lists celery, but COLDOC_TASKS_CELERYCONFIG is not set')
    pid = celery_tasks.autostart(conf.celeryconfig, conf.celery_logfile, timeout=timeout,
                                 env=server_environment(conf))
    logger.info('autostart: a Celery worker for %s %s', conf.celeryconfig,
                'answers' if pid is None else f'started (pid {pid})')
    return pid


def autostart(conf: TasksSettings | None = None) -> dict[str, int | None]:
    """Start the servers that ``COLDOC_TASKS_AUTOSTART`` lists and
    ``$COLDOC_TASKS_AUTOSTART_OPTIONS`` allows, unless they answer.  Return
    ``{name: pid}`` of those considered.  A server that cannot start is
    logged, not raised: the chooser then falls back to another backend."""
    conf = conf or read_settings()
    done: dict[str, int | None] = {}
    for name in conf.autostart:
        if not autostart_allowed(name):
            logger.debug('autostart of %s not allowed by $%s in this process', name, AUTOSTART_OPTIONS_ENV)
            continue
        try:
            done[name] = autostart_coldoc(conf) if name == 'coldoc' else autostart_celery(conf)
        except (ColdocTasksException, OSError, ImportError) as exc:
            logger.error('autostart of the %s server failed: %s', name, exc)
    if done:
        reset()  # choose again: what answers may have changed
        _record_on_settings(conf, done)
    return done


def _record_on_settings(conf: TasksSettings, done: dict[str, int | None]) -> None:
    """Set what coldoc_tasks 0.2 set on the settings after an autostart:
    ``COLDOC_TASKS_AUTOSTART_COLDOC_PROC`` and ``..._INFOFILE`` (the
    server's pid and infofile), ``COLDOC_TASKS_AUTOSTART_CELERY_PROC`` (the
    pid of a Celery worker started here)."""
    from django.conf import settings

    if not settings.configured:
        return
    if done.get('coldoc'):
        settings.COLDOC_TASKS_AUTOSTART_COLDOC_PROC = done['coldoc']
        settings.COLDOC_TASKS_AUTOSTART_INFOFILE = conf.infofile
    if done.get('celery'):
        settings.COLDOC_TASKS_AUTOSTART_CELERY_PROC = done['celery']


# -- inside a started server ---------------------------------------------------------


def _close_connections(*_: object) -> None:
    from django.db import connections

    connections.close_all()


def install_database_hooks() -> None:
    """Make a coldoc server in this process safe for the ORM: connections
    are closed before a worker is forked, and in a worker before and after
    each task, so that no two processes ever share one."""
    from .server import worker_process

    for hooks in (worker_process.BEFORE_FORK_HOOKS, worker_process.BEFORE_TASK_HOOKS,
                  worker_process.AFTER_TASK_HOOKS):
        if _close_connections not in hooks:
            hooks.append(_close_connections)


def setup_django_server() -> None:
    """Prepare this process to be a site's coldoc server: mark it as a server
    (so that the app never autostarts here), ``django.setup()`` once, and the
    database hooks."""
    import django
    from django.apps import apps

    os.environ.setdefault(IN_SERVER_ENV, str(os.getpid()))
    os.environ.pop(AUTOSTART_OPTIONS_ENV, None)
    os.environ.pop(AUTOSTART_ENV, None)
    if not apps.ready:
        if not os.environ.get('DJANGO_SETTINGS_MODULE'):
            raise ColdocTasksSettingsError('DJANGO_SETTINGS_MODULE is not set')
        django.setup()
    _close_connections()
    install_database_hooks()


def server_main(argv: list[str] | None = None) -> int:
    """``python -m coldoc_tasks.django_cli start ...``: set Django up once,
    then run the coldoc server command (same arguments as
    ``python -m coldoc_tasks.coldoc_cli``)."""
    from .coldoc_cli import main

    try:
        setup_django_server()
    except Exception as exc:  # reported through the starting process's stderr
        print(f'coldoc_tasks: cannot set up Django for the task server: {exc!r}', file=sys.stderr)
        return 1
    return main(argv)


# -- the fork class for views ---------------------------------------------------------

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
            from .task_utils import BestForkClass

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
    from .task_utils import get_backend_fork_class

    conf = conf or read_settings()
    try:
        get_backend_fork_class(name, infofile=conf.infofile, celeryconfig=conf.celeryconfig)
    except ColdocTasksBackendUnavailableError as exc:
        return str(exc)
    return None
