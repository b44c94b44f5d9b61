"""Autostarting a site's servers, safely: only where the environment allows
it (``$COLDOC_TASKS_AUTOSTART_OPTIONS`` or 0.2's ``$COLDOC_TASKS_AUTOSTART``),
never from inside a server, once however many processes try at once.

::

    AppConfig.ready() -> autostart(): for each name in COLDOC_TASKS_AUTOSTART
                         allowed here, unless it already answers (under a file lock):
        coldoc: python -m coldoc_tasks.django.server start ...
                  -> django.setup() once, database hooks, then the coldoc server
        celery: coldoc_tasks.celery.daemon.autostart(env=...)
                  -> Celery's own Django fix-up sets Django up

Nothing started here autostarts anything: the environment of what is started
loses both variables, and a coldoc server also has ``COLDOC_TASKS_IN_SERVER``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from ..coldoc.compat import tasks_daemon_autostart
from ..coldoc.context import IN_SERVER_ENV
from ..coldoc.daemon import ensure_server, tasks_daemon_start
from ..exceptions import ColdocTasksException, ColdocTasksSettingsError
from .forks import reset
from .settings import AUTOSTART_ENV, AUTOSTART_OPTIONS_ENV, SERVER_MODULE, TasksSettings, read_settings

__all__ = ['autostart_allowed', 'autostart', 'autostart_coldoc', 'autostart_celery', 'start_coldoc_daemon',
           'server_environment', 'tasks_daemon_django_autostart']

logger = logging.getLogger(__name__)

_ALLOW_ALL = ('autostart', 'all')


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
    it serves.  Raise :class:`~coldoc_tasks.coldoc.daemon.ColdocTasksStartError`
    with its output if it cannot start (one already runs, for example)."""
    return tasks_daemon_start(conf.infofile, conf.socket, conf.password, logfile=conf.coldoc_logfile,
                              env=server_environment(conf), server_module=SERVER_MODULE,
                              extra_args=extra_args, timeout=timeout, queues=conf.queues, **conf.server_options)


def autostart_coldoc(conf: TasksSettings, timeout: float = 30.0) -> int:
    """Make sure a coldoc server serves the site: start one unless one
    answers (race-free: many processes at once start one).  Return its pid."""
    pid = ensure_server(conf.infofile, conf.socket, conf.password, logfile=conf.coldoc_logfile,
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
    from ..celery import daemon as celery_daemon  # Celery is optional

    if not conf.celeryconfig:
        raise ColdocTasksSettingsError('COLDOC_TASKS_AUTOSTART lists celery, but COLDOC_TASKS_CELERYCONFIG is not set')
    pid = celery_daemon.autostart(conf.celeryconfig, conf.celery_logfile, timeout=timeout,
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


def tasks_daemon_django_autostart(settings: Any, **kwargs: Any) -> tuple[int | bool | None, str | BaseException]:
    """:func:`tasks_daemon_autostart` with everything read from the Django
    ``settings`` (``COLDOC_TASKS_INFOFILE``, ``_SOCKET``, ``_PASSWORD``,
    ``_LOGFILE``, ``_PYTHONPATH``); the server sets Django up first.  As in
    0.2, on success ``settings.COLDOC_TASKS_COLDOC_PROC`` is set to the pid
    and ``settings.COLDOC_TASKS_INFOFILE`` to the infofile.  Keywords
    override the settings."""
    conf = read_settings(settings)
    kwargs.setdefault('address', conf.socket)
    kwargs.setdefault('authkey', conf.password)
    kwargs.setdefault('logfile', conf.logfile)
    kwargs.setdefault('pythonpath', conf.pythonpath)
    kwargs.setdefault('env', server_environment(conf))
    kwargs.setdefault('server_module', SERVER_MODULE)
    infofile = kwargs.pop('infofile', conf.infofile)
    proc, info = tasks_daemon_autostart(infofile, **kwargs)
    if proc:
        settings.COLDOC_TASKS_COLDOC_PROC = proc
        settings.COLDOC_TASKS_INFOFILE = info
    return proc, info
