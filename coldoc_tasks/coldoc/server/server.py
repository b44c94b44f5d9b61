"""The coldoc task server: one process, one event loop, no threads.

Data flow::

    client --submit--> Connection --> TaskTable + WorkerPool --run--> worker
    client <--result-- Connection <-- on_final(task) <---done------- worker
                                                   <---pidfd-------- (death)

Every socket is non-blocking and every event (a client's bytes, a worker's
result, a worker's death through its pidfd, a signal through the wake-up fd,
a timer) is seen by one ``select`` in :meth:`TaskServer.serve_forever`; the
loop never polls.  A client must pass the handshake described in
:mod:`.protocol` within ``handshake_timeout`` seconds, and nothing it sends
is read as a message before it does.  Messages are JSON; calls and outcomes
are bodies the server relays without reading: this process never unpickles
what a peer sent.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable

from ... import __version__
from ...durations import check_seconds
from ...exceptions import ColdocTasksProtocolError
from ..messages import REQUESTS, Dropped, decode
from ..protocol import (
    DEFAULT_MAX_BODY,
    MAX_HANDSHAKE_FRAME,
    REFUSAL,
    FrameReader,
    server_challenge,
    server_check_answer,
)
from ..queues import QueueConfig
from ..safefiles import UnsafePathError, clear_socket_path
from .channel import Channel
from .deferred import DeferredTasks
from .history import History
from .loop import EventLoop, Timer
from .memory import resident_bytes, trim_heap
from .requests import Requests
from .stopping import Stopping
from .tasks import Task, TaskTable
from .workers import WorkerPool

logger = logging.getLogger(__name__)

_PEERCRED = struct.Struct('3i')
#: The longest duration accepted for a grace, a retention or a timeout (a year).
#: Seconds the listener rests when the process is out of descriptors.
ACCEPT_PAUSE = 0.5
#: Seconds between two looks at whether the task table shrank enough to give memory back.
HOUSEKEEPING_INTERVAL = 1.0


class Connection:
    """A client connection: its channel, where it is in the handshake, who
    it is, and the waits it has open (rid -> task)."""

    __slots__ = ('channel', 'peer', 'peer_pid', 'authenticated', 'nonce', 'deadline', 'waits')

    def __init__(self, channel: Channel, peer_pid: int | None):
        self.channel = channel
        self.peer_pid = peer_pid
        self.peer = f'pid {peer_pid}' if peer_pid else 'unknown peer'
        self.authenticated = False
        self.nonce = b''
        self.deadline: Timer | None = None
        self.waits: dict[int, Task] = {}


class TaskServer(Stopping, Requests):
    """Serve tasks on ``socket_path`` for clients that hold ``authkey``.

    ``queues``: a list of :class:`QueueConfig` (the ``default`` queue is
    added if missing).  ``result_retention``: seconds an uncollected result
    is kept.  ``terminate_grace``: seconds between SIGTERM and SIGKILL.
    ``stop_grace``: seconds ``stop`` lets running tasks finish.
    ``max_memory_per_worker``: MB a reused worker may hold after a task
    before it is recycled (0 or None: no limit).  ``lent_worker_keepalive``:
    seconds an idle worker started for a lent slot is kept.
    ``stop_queued``: what ``stop`` does with queued tasks: ``'cancel'``
    them, ``'keep'`` them in the journal for the next start (with
    :mod:`.recorder`: running tasks still running after the grace are then
    left to the next start too), or ``'drain'``: run them all, then stop as
    usual (the grace counts from when the queues are empty).
    ``on_exit``: called once the loop has ended (the caller releases its
    lock and files there).
    """

    def __init__(self, socket_path: str, authkey: bytes, queues: list[QueueConfig] | None = None, *,
                 result_retention: float = 3600.0, terminate_grace: float = 2.0, stop_grace: float = 10.0,
                 handshake_timeout: float = 5.0, max_message_size: int = DEFAULT_MAX_BODY,
                 max_memory_per_worker: int | None = None, lent_worker_keepalive: float = 5.0,
                 extra_fds: list[int] | None = None, stop_queued: str = 'cancel'):
        for name, value in (('result_retention', result_retention), ('terminate_grace', terminate_grace),
                            ('stop_grace', stop_grace), ('handshake_timeout', handshake_timeout),
                            ('lent_worker_keepalive', lent_worker_keepalive)):
            check_seconds(name, value)
        self.socket_path = socket_path
        self.authkey = authkey
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.stop_grace = stop_grace
        self.started = time.time()
        self.table = TaskTable(result_retention)
        self.table.history = History()
        self.loop = EventLoop(keep_from_children=extra_fds)
        self.pool = WorkerPool(queues or [], self.table, self.loop, self._on_final, terminate_grace,
                               on_progress=self._on_progress, max_message_size=max_message_size,
                               max_worker_rss=max_memory_per_worker * 2**20 if max_memory_per_worker else None,
                               lent_worker_keepalive=lent_worker_keepalive)
        self.deferred = DeferredTasks(self.loop, self.table, self.pool.submit, self._on_final)
        self.connections: dict[int, Connection] = {}
        self.listener: socket.socket | None = None
        self._socket_inode = -1
        self.stopping = False
        self._stopped = False
        self._linger_deadline: float | None = None
        self.stop_queued = stop_queued
        self._drain_grace: float | None = None  # stop's grace, while the queues drain first
        self.counters = {'auth_failures': 0, 'protocol_errors': 0, 'connections': 0}

    # -- start and stop ------------------------------------------------------------

    def bind(self) -> None:
        """Listen on the socket, mode 0600.  Only a stale socket (nobody
        answers on it) is replaced; anything else at that path raises
        :class:`.safefiles.UnsafePathError` naming it."""
        clear_socket_path(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is made 0600 by bind itself
        try:
            listener.bind(self.socket_path)
            self._socket_inode = os.lstat(self.socket_path).st_ino
        except OSError as exc:
            listener.close()
            if exc.errno == errno.EADDRINUSE:
                raise UnsafePathError(self.socket_path, 'something else was put there meanwhile') from None
            raise
        finally:
            os.umask(old_umask)
        listener.listen(1024)
        listener.setblocking(False)
        self.listener = listener
        self.loop.watch(listener.fileno(), self._accept)

    def _remove_socket(self) -> None:
        """Remove our socket file, and only ours (not what replaced it)."""
        with contextlib.suppress(FileNotFoundError):
            if os.lstat(self.socket_path).st_ino == self._socket_inode:
                os.unlink(self.socket_path)

    def serve_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Run the loop until ``stop`` has finished its work; ``on_ready()``
        is called once signals are handled and clients can connect."""
        if self.listener is None:
            self.bind()
        self.loop.handle_signals(self._on_signal)
        logger.info('coldoc task server %s (pid %d) serving on %s; queues: %s', __version__, os.getpid(),
                    self.socket_path, ', '.join(f'{q.config.name} ({q.config.concurrency}, {q.config.mode})'
                                                for q in self.pool.queues.values()))
        self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeeping)
        try:
            if on_ready is not None:
                on_ready()
            while not self._stopped:
                self.loop.run_once(self.table.expire)
                self._check_stopped()
        finally:
            self.loop.restore_signals()
            self._close()

    def _housekeeping(self) -> None:
        # After a burst the freed memory stays in the process unless given
        # back: the task dict keeps its peak size, and glibc keeps freed
        # blocks for reuse.  Only once most of the burst is gone: a trim
        # costs a few milliseconds.
        if self.table.compact():
            before = resident_bytes()
            trim_heap()
            after = resident_bytes()
            if before is not None and after is not None:
                logger.debug('%d tasks held after a burst: %.1f MB back to the system, %.1f MB resident',
                             len(self.table.tasks), (before - after) / 2**20, after / 2**20)
        self.loop.call_later(HOUSEKEEPING_INTERVAL, self._housekeeping)

    def _close(self) -> None:
        output_sent = not self.loop.has_output
        self.pool.kill_all()
        for connection in list(self.connections.values()):
            self._drop(connection, None)
        if self.listener is not None:
            self.listener.close()
            self._remove_socket()
        self.loop.close()
        if self.recorder is not None:
            self.recorder.close(output_sent)
        logger.info('coldoc task server (pid %d) stopped', os.getpid())

    # -- client connections -------------------------------------------------------------

    def _accept(self) -> None:
        while self.listener is not None:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # EMFILE and the like: the others keep being served
                # The listener stays readable: rest it, or the loop would spin.
                logger.error('cannot accept connections for %g s: %s', ACCEPT_PAUSE, exc)
                listener = self.listener
                self.loop.unwatch(listener.fileno())
                self.loop.call_later(ACCEPT_PAUSE, lambda listener=listener: self._resume_accepting(listener))
                return
            try:
                pid, _, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            except OSError:
                pid = None
            channel = Channel(sock, FrameReader(max_header=MAX_HANDSHAKE_FRAME, max_body=0))
            connection = Connection(channel, pid)
            self.connections[channel.fd] = connection
            self.counters['connections'] += 1
            self.loop.watch(channel.fd, lambda c=connection: self._on_client_readable(c))
            connection.nonce, greeting = server_challenge()
            connection.deadline = self.loop.call_later(self.handshake_timeout,
                                                  lambda c=connection: self._handshake_expired(c))
            self._send(connection, [greeting])

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self.listener is listener:
            self.loop.watch(listener.fileno(), self._accept)

    def _handshake_expired(self, connection: Connection) -> None:
        if not connection.authenticated and not connection.channel.closed:
            self.counters['auth_failures'] += 1
            self._drop(connection, f'no handshake within {self.handshake_timeout:g} s')

    def _drop(self, connection: Connection, why: str | None) -> None:
        """Close a client connection and forget its waits; its tasks go on."""
        channel = connection.channel
        if channel.closed:
            return
        if why:
            logger.warning('dropping connection from %s: %s', connection.peer, why)
        if connection.deadline is not None:
            connection.deadline.cancel()
        for rid in list(connection.waits):
            self._unwait(connection, rid)
        self.loop.unwatch(channel.fd)
        del self.connections[channel.fd]
        channel.close()

    def _send(self, connection: Connection, pieces: list) -> None:
        connection.channel.send(pieces)
        self.loop.want_write(connection.channel)

    def _on_client_readable(self, connection: Connection) -> None:
        try:
            frames = connection.channel.receive()
        except ColdocTasksProtocolError as exc:
            if connection.authenticated:
                self._refuse(connection, str(exc))
            else:
                self.counters['protocol_errors'] += 1
                self.counters['auth_failures'] += 1
                self._drop(connection, str(exc))
            return
        except OSError as exc:
            self._drop(connection, f'connection error: {exc}')
            return
        if frames is None:
            if not connection.authenticated:
                self.counters['auth_failures'] += 1
                self._drop(connection, 'it closed the connection during the handshake')
            else:
                self._drop(connection, None)
            return
        for header, body in frames:
            if connection.channel.closed:
                return
            if not connection.authenticated:
                self._on_handshake(connection, header)
                continue
            try:
                message = decode(header, REQUESTS)
                self._handlers[type(message)](self, connection, message, body)
            except (ColdocTasksProtocolError, TypeError, ValueError) as exc:
                self._refuse(connection, f'bad request: {exc}')
                return

    def _refuse(self, connection: Connection, why: str) -> None:
        """Drop an authenticated client that broke the protocol, telling it
        why as far as its socket takes it now."""
        self.counters['protocol_errors'] += 1
        connection.channel.send(Dropped(f'the server dropped the connection: {why}').encode())
        with contextlib.suppress(OSError):
            connection.channel.flush()
        self._drop(connection, why)

    def _on_handshake(self, connection: Connection, answer: bytes) -> None:
        reply = server_check_answer(self.authkey, connection.nonce, answer)
        if reply is None:
            self.counters['auth_failures'] += 1
            with contextlib.suppress(OSError):
                connection.channel.send([REFUSAL])
                connection.channel.flush()
            self._drop(connection, 'wrong authentication key')
            return
        connection.authenticated = True
        connection.deadline.cancel()
        connection.deadline = None
        connection.channel.reader = FrameReader(max_body=self.max_message_size)
        self._send(connection, [reply])
        logger.debug('client %s authenticated', connection.peer)
