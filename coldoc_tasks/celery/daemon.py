"""Starting Celery workers for the ``celery`` backend: :func:`start` (in the
foreground), :func:`daemon` (in the background), :func:`autostart`, and
coldoc_tasks 0.2's :func:`tasks_daemon_autostart`.  The celeryconfig file is
only ever read.

:func:`daemon` starts ``coldoc_tasks_cli celery start`` as a child, with the
write end of a pipe named by ``$COLDOC_TASKS_CELERY_READY_FD``; the worker
writes one byte to it when Celery says it is ready
(:func:`~coldoc_tasks.celery.worker.announce_ready_through`), and
:func:`daemon` then waits until it answers a ping.  Either the byte, the
child's exit or the timeout ends the wait, whichever comes first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import IO, Any

import celery

from ..exceptions import ColdocTasksBackendUnavailableError
from .app import app_for, resolve_celeryconfig
from .control import CHECK_TIMEOUT, check_broker, ping
from .worker import CeleryTaskPool, announce_ready_through, serve_celeryconfig

__all__ = ['ENV_AUTOSTART_OPTIONS', 'start', 'daemon', 'autostart', 'tasks_daemon_autostart']

logger = logging.getLogger(__name__)


#: Set by :func:`daemon` for the worker it starts: a pipe to write to once ready.
_ENV_READY_FD = 'COLDOC_TASKS_CELERY_READY_FD'


#: Set by :func:`daemon` with no log file: the worker's output goes nowhere once it is ready.
_ENV_SILENCE = 'COLDOC_TASKS_CELERY_SILENCE_AFTER_READY'


#: coldoc_tasks 0.2's tuning of :func:`tasks_daemon_autostart`: ``nocheck``, ``noautostart``, ``force``.
ENV_AUTOSTART_OPTIONS = 'COLDOC_TASKS_AUTOSTART_OPTIONS'


#: How much of a failed worker's output its error message quotes.
_TAIL_LINES = 15


_TAIL_BYTES = 4096


def start(celeryconfig: str | os.PathLike, *, concurrency: int | None = None, queues: list[str] | None = None,
          hostname: str | None = None, loglevel: str = 'INFO', logfile: str | os.PathLike | None = None,
          extra_args: list[str] | None = None) -> None:
    """Run a Celery worker for ``celeryconfig`` in this process, in the
    foreground, until it is stopped.  ``queues`` default to the app's
    default queue; ``hostname`` to ``coldoc_tasks.PID@HOST``."""
    app = app_for(celeryconfig)
    serve_celeryconfig(resolve_celeryconfig(celeryconfig))
    ready = os.environ.pop(_ENV_READY_FD, None)
    silence = os.environ.pop(_ENV_SILENCE, None) == '1'
    if ready:
        announce_ready_through(int(ready), silence=silence)
    _allow_pickle_as_root(os.environ)
    argv = ['worker', '--loglevel', loglevel,
            '--hostname', hostname or f'coldoc_tasks.{os.getpid()}@{socket.gethostname()}']
    if concurrency:
        argv += ['--concurrency', str(concurrency)]
    if queues:
        argv += ['--queues', ','.join(queues)]
    if logfile:
        argv += ['--logfile', os.fspath(logfile)]
    if app.conf.worker_pool == 'prefork':
        app.conf.worker_pool = f'{CeleryTaskPool.__module__}:CeleryTaskPool'
    app.worker_main(argv + list(extra_args or ()))


def daemon(celeryconfig: str | os.PathLike, logfile: str | os.PathLike | None = None, *, timeout: float = 60.0,
           concurrency: int | None = None, queues: list[str] | None = None, hostname: str | None = None,
           loglevel: str = 'INFO', env: dict[str, str] | None = None) -> int:
    """Start a Celery worker for ``celeryconfig`` in the background and
    return its pid once it answers a ping.  Its output goes to ``logfile``
    (appended), or nowhere.  Raise :class:`ColdocTasksBackendUnavailableError`
    if it does not come up within ``timeout`` seconds (it is then stopped)."""
    return _start_worker(celeryconfig, logfile, timeout=timeout, concurrency=concurrency, queues=queues,
                         hostname=hostname, loglevel=loglevel, env=env).pid


def _start_worker(celeryconfig: str | os.PathLike, logfile: str | os.PathLike | IO[bytes] | None, *,
                  timeout: float, concurrency: int | None = None, queues: list[str] | None = None,
                  hostname: str | None = None, loglevel: str = 'INFO', env: dict[str, str] | None = None,
                  cwd: str | os.PathLike | None = None) -> subprocess.Popen:
    """:func:`daemon`, returning the worker's process; ``logfile`` may also be an open file."""
    path = resolve_celeryconfig(celeryconfig)
    app = app_for(path, reload_if_changed=True)
    check_broker(app, CHECK_TIMEOUT)
    hostname = hostname or f'coldoc_tasks.{os.getpid()}.{os.urandom(3).hex()}@{socket.gethostname()}'
    command = [sys.executable, '-m', 'coldoc_tasks.cli', 'celery', 'start', path, '--hostname', hostname,
               '--loglevel', loglevel]
    if concurrency:
        command += ['--concurrency', str(concurrency)]
    for queue in queues or ():
        command += ['--queue', queue]
    read_fd, write_fd = os.pipe()
    environment = dict(os.environ if env is None else env)
    environment[_ENV_READY_FD] = str(write_fd)
    _allow_pickle_as_root(environment)
    own_output = not hasattr(logfile, 'fileno')
    if not own_output:
        output = logfile
    elif logfile:
        output = open(logfile, 'a+b')  # noqa: SIM115 (closed below; read for its tail)
    else:
        output = tempfile.TemporaryFile(prefix='coldoc_tasks-celery-')  # noqa: SIM115 (closed below)
        environment[_ENV_SILENCE] = '1'
    try:
        output.flush()
        start_offset = os.lseek(output.fileno(), 0, os.SEEK_END)
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       env=environment, pass_fds=(write_fd,), start_new_session=True, cwd=cwd)
        finally:
            os.close(write_fd)
        try:
            ready = _wait_ready(read_fd, process, timeout)
        finally:
            os.close(read_fd)
        if ready and _answers(app, hostname, timeout):
            logger.info('Celery worker %s started (pid %s)', hostname, process.pid)
            return process
        code = process.poll()
        if code is None:
            _stop_process(process)
        tail = _tail(output.fileno(), start_offset)
    finally:
        if own_output:
            output.close()
    said = f'; its last output:\n{tail}' if tail else '; it wrote nothing'
    where = f' (in its log {getattr(output, "name", logfile)})' if logfile and tail else ''
    if code is None:
        raise ColdocTasksBackendUnavailableError(f'the Celery worker did not answer within {timeout} s{said}{where}')
    raise ColdocTasksBackendUnavailableError(
        f'the Celery worker exited with code {code} before it was ready{said}{where}')


def _allow_pickle_as_root(environment: dict[str, str] | os._Environ) -> None:
    """Let a worker run as root accept pickle (Celery refuses unless told)."""
    if os.geteuid() != 0 or environment.get('C_FORCE_ROOT'):
        return
    # Without it the worker exits at once, with code 0 and only a warning in
    # its log: the backend cannot work without pickle.
    environment['C_FORCE_ROOT'] = 'true'
    logger.warning('running as root: setting C_FORCE_ROOT for the Celery worker, since the coldoc_tasks backend '
                   'needs pickle; whoever can write to the broker or the result backend can then run code as root, '
                   'so they must be trusted (better: run workers as an ordinary user)')


def _tail(fd: int, offset: int) -> str:
    """The last lines written to file ``fd`` after ``offset``."""
    try:
        end = os.fstat(fd).st_size
        start = max(offset, end - _TAIL_BYTES)
        data = os.pread(fd, end - start, start)
    except OSError:
        return ''
    lines = data.decode(errors='replace').splitlines()
    if start > offset:
        lines = lines[1:]  # the first one may be cut
    return '\n'.join(lines[-_TAIL_LINES:]).strip()


def _answers(app: celery.Celery, hostname: str, timeout: float) -> bool:
    """True once worker ``hostname`` answers a ping, within ``timeout``."""
    # A worker says it is ready a moment before it listens to broadcasts (with
    # Redis, a publish/subscribe channel that keeps nothing for late comers),
    # so a first ping may be lost: ping again, briefly each time.
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if ping(app=app, timeout=min(0.5, remaining), destination=[hostname]):
            return True


def _wait_ready(read_fd: int, process: subprocess.Popen, timeout: float) -> bool:
    """Block until the worker writes to the pipe (True), or exits, or
    ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    pidfd = os.pidfd_open(process.pid) if hasattr(os, 'pidfd_open') else None
    try:
        watched = [read_fd] + ([pidfd] if pidfd is not None else [])
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            readable, _, _ = select.select(watched, [], [], remaining)
            if read_fd in readable and os.read(read_fd, 1) == b'1':
                return True
            if readable:
                # The worker is exiting: it closes its end of the pipe a moment
                # before it can be reaped, and daemon() wants its exit code.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.0, deadline - time.monotonic()))
                return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def _autostart_lock(path: str):
    # One lock per celeryconfig, so that processes autostarting at once start one worker.
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    lock_path = os.path.join(tempfile.gettempdir(), f'coldoc_tasks-celery-{os.getuid()}-{digest}.lock')
    with open(lock_path, 'a') as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def autostart(celeryconfig: str | os.PathLike, logfile: str | os.PathLike | None = None, *,
              timeout: float = 60.0, **daemon_options: Any) -> int | None:
    """Start a worker with :func:`daemon` unless one already answers a ping.
    Return the pid of the worker started, or None if none was needed."""
    path = resolve_celeryconfig(celeryconfig)
    with _autostart_lock(path):
        running = ping(path, timeout=CHECK_TIMEOUT, limit=1)
        if running:
            logger.debug('Celery worker %s already answers: not starting one', running[0])
            return None
        return daemon(path, logfile, timeout=timeout, **daemon_options)


def _pythonpath_entries(pythonpath: str | os.PathLike | Iterable[str | os.PathLike] | None) -> list[str]:
    if not pythonpath:
        return []
    if isinstance(pythonpath, str):
        return [entry for entry in pythonpath.split(os.pathsep) if entry]
    if isinstance(pythonpath, os.PathLike):
        return [os.fspath(pythonpath)]
    return [os.fspath(entry) for entry in pythonpath]


def _autostart_options(opt: str | Iterable[str] | None, force: bool) -> set[str]:
    """The keywords of 0.2 in ``opt`` (default: the environment variable).
    Other words are left alone: the same variable carries the Django
    autostart flag (``autostart``, ``all`` or backend names)."""
    if opt is None:
        opt = os.environ.get(ENV_AUTOSTART_OPTIONS, '')
    words = opt.split(',') if isinstance(opt, str) else list(opt)
    return {word.strip() for word in words} & {'nocheck', 'noautostart'}


def tasks_daemon_autostart(celeryconfig: str | os.PathLike, pythonpath: str | os.PathLike | Iterable = (),
                           cwd: str | os.PathLike | None = None, logfile: str | os.PathLike | bool | IO | None = None,
                           opt: str | Iterable[str] | None = None, tempdir: str | os.PathLike | None = None,
                           timeout: float | None = None, force: bool = False,
                           subcmd: str | None = None) -> subprocess.Popen | bool | None:
    """Start a Celery worker for ``celeryconfig`` unless one answers, as
    coldoc_tasks 0.2 did; built on :func:`daemon`.

    Return True if a worker already answers; else the
    :class:`subprocess.Popen` of the worker started, once it answers a ping
    (``coldoc_tasks.task_utils.proc_join`` waits for it after
    :func:`shutdown`); False if it could not be started (the reason is
    logged); None if none answers and the options say not to start one.

    ``pythonpath`` (a ``PYTHONPATH``-style string, a path, or a list) is put
    first on the worker's ``PYTHONPATH``; ``cwd`` is its working directory;
    ``tempdir`` its ``TMPDIR``.  ``logfile``: a path (appended to), an open
    file, True for a new temporary file (in ``tempdir``; its name is
    logged), or None for no log.  ``timeout``: seconds the worker has to come
    up (default 60; 0.2 waited 4 s, and reported a slower worker as failed
    while leaving it running).  ``opt`` (default: the environment variable
    ``COLDOC_TASKS_AUTOSTART_OPTIONS``) is a comma-separated list of
    ``nocheck`` (start a worker without asking whether one answers),
    ``noautostart`` (only check) and ``force`` (accepted, as in 0.2 it has
    nothing to do for Celery; so is ``force=True``); other words are
    ignored.  ``subcmd`` is accepted for 0.2's Django wrapper, and not used."""
    options = _autostart_options(opt, force)
    path = resolve_celeryconfig(celeryconfig)
    with _autostart_lock(path):
        try:
            if 'nocheck' not in options and ping(path, timeout=CHECK_TIMEOUT, limit=1):
                logger.debug('a Celery worker for %s already answers', path)
                return True
        except ColdocTasksBackendUnavailableError as exc:
            logger.critical('cannot start a Celery worker: %s', exc)
            return False
        if 'noautostart' in options:
            logger.info('no Celery worker answers for %s, and noautostart is set: not starting one', path)
            return None
        environment = dict(os.environ)
        environment[ENV_AUTOSTART_OPTIONS] = 'nocheck,noautostart'  # what the worker imports must not autostart
        entries = _pythonpath_entries(pythonpath) + _pythonpath_entries(environment.get('PYTHONPATH'))
        if entries:
            environment['PYTHONPATH'] = os.pathsep.join(entries)
        if tempdir:
            for name in ('TMPDIR', 'TEMP', 'TMP'):
                environment[name] = os.fspath(tempdir)
        if logfile is True:
            with tempfile.NamedTemporaryFile(dir=tempdir, delete=False, prefix='coldoc_tasks_celery_',
                                             suffix='.log') as created:
                logfile = created.name
            logger.info('the Celery worker for %s logs to %s', path, logfile)
        try:
            return _start_worker(path, logfile or None, timeout=60.0 if timeout is None else timeout,
                                 env=environment, cwd=cwd)
        except ColdocTasksBackendUnavailableError as exc:
            logger.critical('cannot start a Celery worker: %s', exc)
            return False
