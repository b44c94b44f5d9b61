"""Starting a coldoc task server in the background.

:func:`tasks_daemon_start` runs ``python -m coldoc_tasks.coldoc.cli start
--detach --ready-fd N``: the new process detaches (a new session, re-parented
to init, so no caller is left with a zombie), binds its socket, writes the
infofile and then writes ``ready`` on the pipe ``N``.  The caller blocks on
that pipe, never polls, and reports the server's own error output if the pipe
closes without ``ready``.

:func:`ensure_server` starts a server only if none answers; the
infofile's start lock makes it race-free when many processes call it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterable

from ..exceptions import ColdocTasksException, ColdocTasksStartError
from .context import IN_SERVER_ENV
from .control import ping
from .infofile import PathLike, read_infofile, start_lock
from .options import OPTIONS_BY_NAME, ColdocTasksOptionError, check_server_options
from .queues import QueueConfig
from .safefiles import read_own_file

logger = logging.getLogger(__name__)

#: Environment variable through which the key reaches a daemon (never its command line).
AUTHKEY_ENV = 'COLDOC_TASKS_AUTHKEY_HEX'
READY = b'ready\n'


#: How the server's command line starts its error messages.
CLI_PREFIX = 'coldoc_tasks_cli:'
#: The module whose command line ``start`` runs a server.
SERVER_MODULE = 'coldoc_tasks.coldoc.cli'


def server_command(infofile: PathLike, socket_path: PathLike | None = None, *, logfile: PathLike | None = None,
                   queues: Iterable[QueueConfig | str] = (), options: dict | None = None,
                   server_module: str = SERVER_MODULE) -> list[str]:
    """The command line that runs a server in the foreground."""
    command = [sys.executable, '-m', server_module, 'start', os.fspath(infofile)]
    if socket_path:
        command.append(os.fspath(socket_path))
    if logfile:
        command += ['--logfile', os.fspath(logfile)]
    for queue in queues:
        if isinstance(queue, QueueConfig):
            queue = f'{queue.name}:{queue.concurrency}:{queue.mode}:{queue.max_tasks_per_worker or ""}'
        command += ['--queue', queue]
    for name, value in (options or {}).items():
        flag = f'--{name.replace("_", "-")}'
        if value is None or value is False:
            continue
        if value is True:
            command.append(flag)
            continue
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            command += [flag, str(item)]
    return command


#: Keywords of :func:`tasks_daemon_start` that are server flags without a range.
_PLAIN_FLAGS = ('preload', 'verbose')


def check_daemon_options(options: dict) -> None:
    """Refuse, before anything starts, a server option that is unknown or
    out of its range, naming it (see :mod:`coldoc_tasks.coldoc.options`)."""
    unknown = sorted(set(options) - set(OPTIONS_BY_NAME) - set(_PLAIN_FLAGS))
    if unknown:
        raise ColdocTasksOptionError(f'unknown server option(s) {", ".join(unknown)}; known are '
                                     f'{", ".join([*OPTIONS_BY_NAME, *_PLAIN_FLAGS])}')
    check_server_options({name: value for name, value in options.items() if name in OPTIONS_BY_NAME})


def tasks_daemon_start(infofile: PathLike, socket_path: PathLike | None = None, authkey: bytes | str | None = None,
                       *, logfile: PathLike | None = None, queues: Iterable[QueueConfig | str] = (),
                       pythonpath: Iterable[PathLike] | PathLike | None = None, env: dict | None = None,
                       timeout: float = 30.0, server_module: str = SERVER_MODULE, extra_args: Iterable[str] = (),
                       cwd: PathLike | None = None, **options) -> int:
    """Start a server for ``infofile`` in the background and return its pid
    once it serves; raise :class:`ColdocTasksStartError` with its output if
    it cannot start (for example because one is already running).

    ``options`` are the keyword options of :func:`run_server`
    (``result_retention``, ``terminate_grace``, ``stop_grace``, ...).
    ``pythonpath`` is put in front of the server's ``PYTHONPATH``, so that
    it can import the code of the tasks; ``env`` replaces the environment it
    inherits.  ``server_module`` is the module run as ``python -m MODULE
    start ...`` (one that prepares the process first, such as the Django
    one); ``extra_args`` are more options for its command line; ``cwd``
    its working directory.
    """
    check_daemon_options(options)
    environment = dict(os.environ if env is None else env)
    environment.pop(IN_SERVER_ENV, None)
    if authkey is not None:
        environment[AUTHKEY_ENV] = (authkey.encode('utf-8') if isinstance(authkey, str) else authkey).hex()
    if pythonpath:
        paths = [pythonpath] if isinstance(pythonpath, (str, os.PathLike)) else list(pythonpath)
        existing = environment.get('PYTHONPATH')
        environment['PYTHONPATH'] = os.pathsep.join([*map(os.fspath, paths), *([existing] if existing else [])])
    ready_r, ready_w = os.pipe()
    command = server_command(infofile, socket_path, logfile=logfile, queues=queues, options=options,
                             server_module=server_module)
    command += [*extra_args, '--detach', '--ready-fd', str(ready_w)]
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, pass_fds=(ready_w,), env=environment,
                                   start_new_session=True, cwd=cwd)
    finally:
        os.close(ready_w)
    try:
        ready, output = _wait_ready(ready_r, process, timeout)
    finally:
        os.close(ready_r)
    if not ready:
        raise ColdocTasksStartError(_why_not_started(infofile, output.decode('utf-8', 'replace'), logfile))
    pid = read_infofile(infofile)['pid']
    logger.debug('task server for %s started (pid %d)', os.fspath(infofile), pid)
    return pid


def _why_not_started(infofile: PathLike, output: str, logfile: PathLike | None) -> str:
    """What a server that did not start said: its own error, which names the
    problem, as it is; only when it said nothing (it crashed, or hung), the
    last lines of its log, which then tell what happened."""
    said = [line.removeprefix(f'{CLI_PREFIX} ') for line in output.strip().splitlines()]
    if said and said[-1] and not said[-1].startswith(('Traceback', ' ')) and '(timed out' not in said[-1]:
        return '\n'.join(said)
    detail = f'the task server for {os.fspath(infofile)} did not start: ' + ('\n'.join(said) or 'no output')
    if logfile:
        with contextlib.suppress(OSError, ColdocTasksException):  # never through a link planted there
            lines = read_own_file(logfile, limit=1 << 30).decode('utf-8', 'replace').splitlines(True)
            if lines:
                detail += '\nlast lines of the log:\n' + ''.join(lines[-20:]).rstrip('\n')
    return detail


def _wait_ready(ready_fd: int, process: subprocess.Popen, timeout: float) -> tuple[bool, bytes]:
    """Read the ready pipe and the starting server's stderr until ``ready``
    arrives, or both pipes end (it failed), or the timeout passes."""
    deadline = time.monotonic() + timeout
    stderr = process.stderr
    received = {ready_fd: b'', stderr.fileno(): b''}
    open_fds = set(received)
    try:
        while open_fds and not received[ready_fd].startswith(READY):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, received[stderr.fileno()] + b'\n(timed out waiting for the server to be ready)'
            for fd in select.select(list(open_fds), [], [], remaining)[0]:
                chunk = os.read(fd, 65536)
                if chunk:
                    received[fd] += chunk
                else:
                    open_fds.discard(fd)
        return received[ready_fd].startswith(READY), received[stderr.fileno()]
    finally:
        stderr.close()
        process.wait(timeout=max(1.0, deadline - time.monotonic()))  # the detaching parent exits at once


def ensure_server(infofile: PathLike, socket_path: PathLike | None = None,
                  authkey: bytes | str | None = None, **kwargs) -> int:
    """Make sure a server serves ``infofile``: start one in the background
    unless one answers.  Return its pid.  Safe when many processes call it
    at once: exactly one server results.  (``tasks_daemon_autostart`` of
    :mod:`coldoc_tasks.coldoc.compat` is this with 0.2's arguments and return.)"""
    answer = ping(infofile)
    if answer is not None:
        return answer['pid']
    if os.environ.get(IN_SERVER_ENV):
        raise ColdocTasksStartError('a task server does not autostart another one from its own process or workers')
    with start_lock(infofile):
        answer = ping(infofile)
        if answer is not None:
            return answer['pid']
        return tasks_daemon_start(infofile, socket_path, authkey, **kwargs)
