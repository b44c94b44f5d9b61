"""Starting a coldoc task server in this process: the lock, the socket, the
authkey, the infofile, logging; then the event loop until it stops."""

from __future__ import annotations

import importlib
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterable

from ... import __version__
from ...exceptions import (
    ColdocTasksLegacyServerRunningError,
    ColdocTasksOptionError,
    ColdocTasksServerRunningError,
)
from ..context import IN_SERVER_ENV
from ..infofile import PathLike, ServerLock, lock_holder, replaceable_infofile, write_infofile
from ..legacy import legacy_server_answers
from ..options import check_server_options
from ..protocol import DEFAULT_MAX_BODY, PROTOCOL_VERSION
from ..queues import QueueConfig
from ..safefiles import (
    PrivateRotatingFileHandler,
    UnsafePathError,
    check_private_directory,
    clear_socket_path,
    make_private_directory,
    remove_own_directory,
)
from .journal import Journal
from .recorder import Recorder
from .server import TaskServer

logger = logging.getLogger(__name__)

AUTHKEY_BYTES = 32
#: Seconds to find out whether a coldoc_tasks 0.2 server answers at the old infofile's address.
LEGACY_PROBE_TIMEOUT = 3.0
LOG_FORMAT = '%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s'


def private_socket_path() -> str:
    """A socket path in a fresh 0700 directory of the system's temporary area."""
    return os.path.join(tempfile.mkdtemp(prefix='coldoc-tasks-'), 'socket')


def _previous_socket(previous: dict) -> tuple[str | None, str | None]:
    """The previous server's socket path, if its directory is still ours and
    private or can be made again; and that directory, if a server of this
    infofile made it (then the server removes it when it stops)."""
    path = previous.get('socket')
    if not path:
        return None, None
    directory = os.path.dirname(path) or '.'
    made_by_a_server = previous.get('socket_directory') == directory
    try:
        check_private_directory(directory)
    except FileNotFoundError:
        try:
            make_private_directory(directory)
        except (OSError, UnsafePathError):
            return None, None
        return path, directory
    except (OSError, UnsafePathError):
        return None, None
    return path, directory if made_by_a_server else None


def setup_logging(logfile: PathLike | None, level: int = logging.INFO) -> None:
    """Log to ``logfile`` (rotating: 10 MB, 5 kept; every file 0600, never
    through a link) or to stderr."""
    if logfile:
        handler: logging.Handler = PrivateRotatingFileHandler(
            os.fspath(logfile), maxBytes=10 * 1024 * 1024, backupCount=5, encoding='utf-8')
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def run_server(infofile: PathLike, socket_path: PathLike | None = None, authkey: bytes | str | None = None, *,
               queues: list[QueueConfig] | None = None, logfile: PathLike | None = None,
               result_retention: float = 3600.0, terminate_grace: float = 2.0, stop_grace: float = 10.0,
               handshake_timeout: float = 5.0, max_message_size: int = DEFAULT_MAX_BODY,
               max_memory_per_worker: int | None = None, lent_worker_keepalive: float = 5.0,
               preload: Iterable[str] = (),
               journal: PathLike | None = None, journal_sync: str = 'batch', stop_queued: str | None = None,
               on_ready: Callable[[dict], None] | None = None) -> None:
    """Run a coldoc task server in this process until it is stopped.

    Missing ``socket_path`` or ``authkey`` are taken from the previous
    infofile, if any (so clients holding them reconnect), else a fresh socket
    in a private directory and a random key.  Raise
    :class:`ColdocTasksServerRunningError` if a live server holds the
    infofile.  Files of others are never touched: a link, a foreign file or a
    file that is no infofile at ``infofile``, or anything but a stale socket
    at ``socket_path``, raises :class:`.safefiles.UnsafePathError` naming
    it; an infofile of coldoc_tasks 0.2 whose server still answers raises
    :class:`ColdocTasksLegacyServerRunningError` (a dead one's is replaced,
    with a fresh socket and key).  ``preload``: modules imported before any worker is forked,
    so that workers start with them (the code of the tasks, typically).
    ``max_memory_per_worker``: MB of resident memory a reused worker may hold
    after a task; over it, the worker is recycled once it has sent the
    outcome (None or 0: no limit; a fresh worker runs one task anyway).
    ``lent_worker_keepalive``: seconds a reused worker started for a lent
    slot (its task's parent waits for it) stays idle before it retires.
    ``journal``: a file where every task is recorded, so that queued tasks
    and uncollected results survive a crash or a restart (see
    :mod:`.recorder`); a journal that is corrupt, of another format or held
    by another server raises :class:`ColdocTasksJournalError` before
    anything starts.  ``stop_queued``: what ``stop`` does with queued tasks,
    ``'cancel'``, ``'keep'`` (for the next start; needs a journal, and is
    its default) or ``'drain'`` (run them first).  ``journal_sync``:
    ``'batch'`` (sync every batch of records) or ``'second'`` (once a second).
    ``on_ready(info)`` is called once clients can connect.
    """
    options = check_server_options({'result_retention': result_retention, 'terminate_grace': terminate_grace,
                                    'stop_grace': stop_grace, 'handshake_timeout': handshake_timeout,
                                    'max_message_size': max_message_size,
                                    'max_memory_per_worker': max_memory_per_worker,
                                    'lent_worker_keepalive': lent_worker_keepalive,
                                    'journal': journal, 'journal_sync': journal_sync,
                                    'stop_queued': stop_queued})
    journal = options.pop('journal')
    journal_sync = options.pop('journal_sync')
    journal = journal and os.path.abspath(journal)
    options['stop_queued'] = options['stop_queued'] or ('keep' if journal else 'cancel')
    if options['stop_queued'] == 'keep' and not journal:
        raise ColdocTasksOptionError('stop_queued=keep needs a journal, where the queued tasks are kept')
    infofile = os.path.abspath(os.fspath(infofile))
    for module in preload:
        importlib.import_module(module)
    lock = ServerLock(infofile)
    if not lock.acquire():
        raise ColdocTasksServerRunningError(infofile, lock_holder(infofile))
    made_directory = None
    opened = None
    try:
        if journal:
            opened = Journal.open(journal, f'coldoc_tasks {__version__}, protocol {PROTOCOL_VERSION}')
        kind, previous = replaceable_infofile(infofile)
        if kind == 'legacy':
            legacy_pid = legacy_server_answers(previous, timeout=LEGACY_PROBE_TIMEOUT)
            if legacy_pid is not None:
                raise ColdocTasksLegacyServerRunningError(infofile, legacy_pid)
            logger.info('replacing the infofile %s of a coldoc_tasks 0.2 server that no longer runs', infofile)
            previous = {}  # nothing of the old server is kept: a fresh socket, a fresh key
        if isinstance(authkey, str):
            authkey = authkey.encode('utf-8')
        authkey = authkey or previous.get('authkey') or secrets.token_bytes(AUTHKEY_BYTES)
        if socket_path is None:
            socket_path, made_directory = _previous_socket(previous)
            if socket_path is not None:
                try:
                    clear_socket_path(socket_path)
                except UnsafePathError as exc:
                    logger.warning('not reusing the previous socket: %s', exc)
                    socket_path = None
        if socket_path is None:
            socket_path = private_socket_path()
            made_directory = os.path.dirname(socket_path)
        socket_path = os.path.abspath(os.fspath(socket_path))
        os.environ[IN_SERVER_ENV] = str(os.getpid())
        server = TaskServer(socket_path, authkey, queues, **options,
                            extra_fds=[lock.fileno] + ([opened[0].fileno] if opened else []))
        if opened:
            Recorder(server, opened[0], journal_sync).recover(opened[1])
        server.bind()
        info = {'socket': socket_path, 'authkey': authkey, 'pid': os.getpid(), 'version': __version__,
                'protocol': PROTOCOL_VERSION, 'start_time': time.time(),
                'logfile': os.path.abspath(os.fspath(logfile)) if logfile else None,
                'socket_directory': made_directory, 'stop_grace': stop_grace, 'terminate_grace': terminate_grace,
                'journal': journal}
        write_infofile(infofile, info)
        server.serve_forever(on_ready=None if on_ready is None else lambda: on_ready(info))
    finally:
        if opened:
            opened[0].close()
        try:
            if made_directory is not None and not remove_own_directory(made_directory):
                logger.warning('the socket directory %s is not empty: left in place', made_directory)
        finally:
            lock.release()


def tasks_server_start(infofile: PathLike, socket_path: PathLike | None = None,
                       authkey: bytes | str | None = None, **options) -> None:
    """Run a server for ``infofile`` in this process until it stops (see
    :func:`run_server` for the options)."""
    run_server(infofile, socket_path, authkey, **options)
