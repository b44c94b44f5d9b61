"""Starting a coldoc task server in this process: the lock, the socket, the
authkey, the infofile, logging; then the event loop until it stops."""

from __future__ import annotations

import contextlib
import importlib
import logging
import logging.handlers
import os
import secrets
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable

from .. import __version__
from ..exceptions import ColdocTasksException
from .infofile import InfofileError, PathLike, ServerLock, lock_holder, read_infofile, write_infofile
from .protocol import DEFAULT_MAX_BODY, PROTOCOL_VERSION
from .server import TaskServer
from .workers import QueueConfig

logger = logging.getLogger(__name__)

#: Environment variable set in the server process and so in its workers:
#: code that would autostart a server must not do so from inside one.
IN_SERVER_ENV = 'COLDOC_TASKS_IN_SERVER'
AUTHKEY_BYTES = 32
LOG_FORMAT = '%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s'


class ColdocTasksServerRunningError(ColdocTasksException):
    """A live server already holds this infofile."""

    def __init__(self, infofile: str, pid: int | None):
        super().__init__(f'a coldoc task server is already running (pid {pid}) for {infofile}')
        self.pid = pid


def private_socket_path() -> str:
    """A socket path in a fresh 0700 directory of the system's temporary area."""
    return os.path.join(tempfile.mkdtemp(prefix='coldoc-tasks-'), 'socket')


def _usable_socket_directory(path: str) -> bool:
    """True if the directory of ``path`` (the previous server's socket) is
    ours and private (0700, not a link), or could be made again so."""
    directory = os.path.dirname(path) or '.'
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        try:
            os.makedirs(directory, mode=0o700)
        except OSError:
            return False
        return True
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) & 0o077 == 0)


def setup_logging(logfile: PathLike | None, level: int = logging.INFO) -> None:
    """Log to ``logfile`` (rotating: 10 MB, 5 kept) or to stderr."""
    if logfile:
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
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
               preload: Iterable[str] = (), on_ready: Callable[[dict], None] | None = None) -> None:
    """Run a coldoc task server in this process until it is stopped.

    Missing ``socket_path`` or ``authkey`` are taken from the previous
    infofile, if any (so clients holding them reconnect), else a fresh socket
    in a private directory and a random key.  Raise
    :class:`ColdocTasksServerRunningError` if a live server holds the
    infofile.  ``preload``: modules imported before any worker is forked,
    so that workers start with them (the code of the tasks, typically).
    ``on_ready(info)`` is called once clients can connect.
    """
    infofile = os.path.abspath(os.fspath(infofile))
    for module in preload:
        importlib.import_module(module)
    lock = ServerLock(infofile)
    if not lock.acquire():
        raise ColdocTasksServerRunningError(infofile, lock_holder(infofile))
    try:
        previous = {}
        with contextlib.suppress(InfofileError):
            previous = read_infofile(infofile)
        if isinstance(authkey, str):
            authkey = authkey.encode('utf-8')
        authkey = authkey or previous.get('authkey') or secrets.token_bytes(AUTHKEY_BYTES)
        if socket_path is None and previous.get('socket') and _usable_socket_directory(previous['socket']):
            socket_path = previous['socket']
        socket_path = os.path.abspath(os.fspath(socket_path)) if socket_path else private_socket_path()
        os.environ[IN_SERVER_ENV] = str(os.getpid())
        server = TaskServer(socket_path, authkey, queues, result_retention=result_retention,
                            terminate_grace=terminate_grace, stop_grace=stop_grace,
                            handshake_timeout=handshake_timeout, max_message_size=max_message_size,
                            extra_fds=[lock.fileno])
        server.bind()
        info = {'socket': socket_path, 'authkey': authkey, 'pid': os.getpid(), 'version': __version__,
                'protocol': PROTOCOL_VERSION, 'start_time': time.time(),
                'logfile': os.path.abspath(os.fspath(logfile)) if logfile else None}
        write_infofile(infofile, info)
        server.serve_forever(on_ready=None if on_ready is None else lambda: on_ready(info))
    finally:
        lock.release()
