"""coldoc_tasks 0.2's way of finding and starting a coldoc server:
:func:`tasks_server_readinfo`, :func:`task_server_check` and
:func:`tasks_daemon_autostart` returning ``(pid, infofile)``, with 0.2's
arguments.  (``tasks_daemon_django_autostart`` is in
:mod:`coldoc_tasks.django.autostart`.)"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from typing import Any

from ..exceptions import ColdocTasksException
from .control import ping
from .daemon import ensure_server, tasks_daemon_start
from .infofile import InfofileError, PathLike, read_infofile, start_lock

__all__ = ['AUTOSTART_OPTIONS_ENV', 'tasks_server_readinfo', 'task_server_check', 'tasks_daemon_autostart',
           'temporary_logfile']

logger = logging.getLogger(__name__)

# -- coldoc_tasks 0.2's starting functions ------------------------------------------

#: The environment variable of :func:`tasks_daemon_autostart`'s default
#: ``opt``: comma-separated keywords among ``nocheck``, ``noautostart``,
#: ``force`` (other words, such as the Django flags, are ignored here).
AUTOSTART_OPTIONS_ENV = 'COLDOC_TASKS_AUTOSTART_OPTIONS'
_AUTOSTART_KEYWORDS = ('nocheck', 'noautostart', 'force')


def tasks_server_readinfo(infofile: PathLike) -> list:
    """``[address, authkey, pid, other]`` from ``infofile``: the socket path,
    the key (bytes), the pid of the server that wrote it (maybe gone since)
    and a dict of the other fields.  Raise :class:`InfofileError` if it is
    missing or not an infofile."""
    info = dict(read_infofile(infofile))
    return [info.pop('socket'), info.pop('authkey'), info.pop('pid'), info]


def task_server_check(infofile: PathLike) -> tuple[bool, str | None, bytes | None, int | None]:
    """``(ok, address, authkey, pid)``: ``ok`` is True if the server of
    ``infofile`` answers now (then ``pid`` is its pid); with no readable
    infofile, ``(False, None, None, None)``."""
    try:
        address, authkey, pid, _ = tasks_server_readinfo(infofile)
    except InfofileError as exc:
        logger.debug('task_server_check: %s', exc)
        return False, None, None, None
    answer = ping(address=address, authkey=authkey, timeout=2.0, warn=False)
    if answer is None:
        return False, address, authkey, pid
    return True, address, authkey, answer['pid']


def _autostart_keywords(opt: str | Iterable[str] | None) -> set[str]:
    if opt is None:
        opt = os.environ.get(AUTOSTART_OPTIONS_ENV, '')
    words = opt.split(',') if isinstance(opt, str) else list(opt)
    return {word.strip() for word in words} & set(_AUTOSTART_KEYWORDS)


def _pythonpath_list(pythonpath: Any) -> list[str]:
    """0.2's ``pythonpath``: a PYTHONPATH-style str, a Path, bytes, or a list of them."""
    if pythonpath is None:
        return []
    if isinstance(pythonpath, (str, bytes)):
        pythonpath = os.fsdecode(pythonpath).split(os.pathsep)
    elif isinstance(pythonpath, os.PathLike):
        pythonpath = [pythonpath]
    return [os.fsdecode(os.fspath(path)) for path in pythonpath if path]


def temporary_logfile(directory: PathLike) -> str:
    """A new, empty log file (mode 0600) in ``directory``, for a server
    started with ``logfile=True``."""
    fd, path = tempfile.mkstemp(prefix='coldoc_tasks_', suffix='.log', dir=os.fspath(directory))
    os.close(fd)
    return path


def tasks_daemon_autostart(infofile: PathLike, address: PathLike | bytes | None = None,
                           authkey: bytes | str | None = None, *, tempdir: PathLike | None = None,
                           logfile: PathLike | bool | None = None, pythonpath: Any = (), cwd: PathLike | None = None,
                           opt: str | Iterable[str] | None = None, force: bool | None = False, timeout: float = 30.0,
                           env: dict | None = None, server_module: str | None = None, **options: Any
                           ) -> tuple[int | bool | None, str | BaseException]:
    """Make sure a server serves ``infofile``, as coldoc_tasks 0.2 did: start
    one in the background unless one answers.

    Return ``(pid, infofile)``: the pid of the server that answers or was
    started; ``(None, infofile)`` if none answers and starting was not
    allowed (``noautostart``); ``(False, error)`` if it could not be started
    (the error is logged too).  Safe when many processes call it at once.

    ``address`` and ``authkey``: the socket and key of a new server (default:
    the previous ones kept in the infofile, else a fresh socket in a private
    directory and a random key).  ``logfile``: a path, or True for a new
    temporary log file beside the infofile.  ``pythonpath``: where the server
    finds the code of the tasks (a PYTHONPATH-style str or a list).
    ``tempdir``: the directory for the server's temporary files (its socket
    directory included).  ``cwd``: the server's working directory.
    ``opt``: keywords (a comma-separated str or a list; default
    ``$COLDOC_TASKS_AUTOSTART_OPTIONS``): ``nocheck`` (do not ask first
    whether a server answers), ``noautostart`` (never start one), ``force``
    (accepted for compatibility: a stale lock or socket never stops a start
    here).  ``timeout``: seconds to wait for a new server to serve.  Other
    keywords are server options (``queues``, ``result_retention``, ...) as
    for :func:`tasks_daemon_start`.
    """
    given, infofile = os.fspath(infofile), os.path.abspath(os.fspath(infofile))
    keywords = _autostart_keywords(opt)
    if force or 'force' in keywords:
        logger.debug('autostart of %s: "force" needs no action, stale files are replaced safely', infofile)
    try:
        if 'noautostart' in keywords:
            answer = ping(infofile)
            return (None if answer is None else answer['pid']), given
        if logfile is True:
            logfile = temporary_logfile(os.path.dirname(infofile))
        elif logfile is False:
            logfile = None
        environment = dict(os.environ if env is None else env)
        if tempdir is not None:
            for name in ('TMPDIR', 'TEMP', 'TMP'):
                environment[name] = os.fspath(tempdir)
        start_options: dict[str, Any] = dict(options, logfile=logfile, pythonpath=_pythonpath_list(pythonpath),
                                             env=environment, timeout=timeout, cwd=cwd)
        if server_module is not None:
            start_options['server_module'] = server_module
        socket_path = None if address is None else os.fsdecode(address)
        if 'nocheck' in keywords:
            with start_lock(infofile):
                pid = tasks_daemon_start(infofile, socket_path, authkey, **start_options)
        else:
            pid = ensure_server(infofile, socket_path, authkey, **start_options)
    except (ColdocTasksException, OSError) as exc:
        logger.error('cannot autostart a task server for %s: %s', infofile, exc)
        return False, exc
    return pid, given


