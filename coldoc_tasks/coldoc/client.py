"""The client side of the coldoc task server protocol.

Messages are JSON (see :mod:`.server.protocol`); a task's outcome arrives as
the body of a message and is decoded by the fork object that waits for it.
A process keeps one authenticated connection per server and shares it among
its threads: requests carry an id, and a reader thread hands each reply to
the thread waiting for it.  So the per-task path makes no ``connect`` and no
handshake.  After ``fork()`` a child never touches its parent's connections:
they are forgotten (and their descriptors closed) in the child, which makes
its own when it needs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import threading
import weakref
from collections.abc import Callable
from typing import Any

from ..aio import threadsafe_future, wait_future
from ..durations import format_seconds
from ..exceptions import (
    ColdocTasksConnectionError,
    ColdocTasksException,
    ColdocTasksProtocolError,
    ColdocTasksTimeoutError,
    ServerGoneError,
)
from ..progress import Progress
from .messages import (
    Dropped,
    Error,
    Lost,
    Message,
    Ok,
    Ping,
    Pushed,
    PushedLost,
    PushedProgress,
    Result,
    Unwait,
    decode,
)
from .protocol import FrameReader, RecvBuffer, client_handshake, sendall_pieces

#: What a server sends a client.
_FROM_SERVER = (Ok, Result, Lost, Pushed, PushedLost, PushedProgress, Error, Dropped)

logger = logging.getLogger(__name__)

#: Seconds allowed to connect and authenticate.
CONNECT_TIMEOUT = 5.0
#: How many results that arrived after their wait() gave up are kept per connection.
LATE_RESULTS_KEPT = 10_000


class PushSlot:
    """Where the pushed outcome of one task submitted by this process lands.
    ``latch`` is released when it has (or when the connection broke, leaving
    ``message`` None); then the callbacks of :meth:`add_done_callback` run,
    in the reader thread."""

    __slots__ = ('latch', 'message', 'body', 'pid', '_callbacks', '_done', '__weakref__')

    def __init__(self):
        self.pid = os.getpid()  # a copy inherited by a forked child is not fed
        self.latch = threading.Lock()
        self.latch.acquire()
        self.message: Pushed | PushedLost | None = None
        self.body = b''
        self._callbacks: list[Callable[[], None]] = []
        self._done = False

    def fill(self, message: Pushed | PushedLost | None, body: bytes = b'') -> None:
        """Land the outcome (``None``: the connection broke) and wake who waits."""
        self.message, self.body = message, body
        with _callbacks_lock:
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        self.latch.release()
        for callback in callbacks:
            callback()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (which must not raise) once the slot is filled;
        at once if it is."""
        with _callbacks_lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback()

    def remove_done_callback(self, callback: Callable[[], None]) -> None:
        with _callbacks_lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)


class ProgressBox:
    """Where the progress the server pushes for one task lands, while a
    fork object of the task in this process holds it."""

    __slots__ = ('latest', '__weakref__')

    def __init__(self):
        self.latest: Progress | None = None


class _Reply:
    """A slot for the reply to one request; ``callback`` (which must not
    raise) is called, in the reader thread, once it has arrived."""

    __slots__ = ('event', 'message', 'body', 'callback')

    def __init__(self, callback: Callable[[], None] | None = None):
        self.event = threading.Event()
        self.message: Message | None = None
        self.body = b''
        self.callback = callback

    def fill(self, message: Message | None, body: bytes = b'') -> None:
        self.message, self.body = message, body
        self.event.set()
        if self.callback is not None:
            self.callback()


# Guards the callbacks of every PushSlot: contention is rare, and a lock per
# slot would cost every task its allocation.
_callbacks_lock = threading.Lock()


class ServerConnection:
    """One authenticated connection to a task server, shared by every thread
    of this process."""

    def __init__(self, address: str, authkey: bytes, connect_timeout: float = CONNECT_TIMEOUT):
        self.address = address
        self.pid = os.getpid()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(address)
            reader = FrameReader(max_body=0)
            client_handshake(sock, authkey, reader)
        except ColdocTasksException:
            sock.close()
            raise
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise ColdocTasksConnectionError(f'no task server listens on {address}: {exc.strerror}') from None
        except TimeoutError:
            sock.close()
            raise ColdocTasksConnectionError(f'the task server on {address} did not answer within '
                                             f'{connect_timeout} s') from None
        except OSError as exc:
            sock.close()
            raise ColdocTasksConnectionError(f'cannot connect to the task server on {address}: {exc}') from None
        sock.settimeout(None)
        self.sock = sock
        self._reader = FrameReader(max_body=2**32 - 1)
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Reply] = {}
        self._rids = itertools.count(1)
        self.broken: ColdocTasksConnectionError | None = None
        #: task id -> (message, body) of results whose wait() had given up
        self.late_results: dict[str, tuple[Result | Lost, bytes]] = {}
        #: task id -> the slot its pushed outcome goes to, while a fork object holds it
        self.push_slots: weakref.WeakValueDictionary[str, PushSlot] = weakref.WeakValueDictionary()
        #: task id -> where its pushed progress goes, while a fork object holds it
        self.progress_boxes: weakref.WeakValueDictionary[str, ProgressBox] = weakref.WeakValueDictionary()
        self._thread = threading.Thread(target=self._read_loop, name=f'coldoc-tasks-client {address}', daemon=True)
        self._thread.start()
        try:
            info = self.request(Ping, timeout=connect_timeout)[0].value
        except BaseException:
            self.close()
            raise
        self.server_pid: int = info['pid']
        self.max_message_size: int = info['max_message_size']
        #: the queues the server runs (``*``: it accepts any name)
        self.queues: list[str] = info.get('queues') or []
        #: the id of the server's journal, if it has one: a client that loses
        #: the connection waits for a server on the same journal to come back
        self.journal_id: str | None = info.get('journal')

    def send(self, message: Message, body: bytes = b'') -> None:
        """Send a message that gets no reply."""
        self._send(message.encode(body))

    def _send(self, pieces: list) -> None:
        if self.broken is not None:
            raise self.broken
        try:
            with self._send_lock:
                sendall_pieces(self.sock, pieces)
        except OSError as exc:
            self._break(ServerGoneError(f'the connection to the task server on {self.address} broke: {exc}'))
            raise self.broken from None

    def request(self, kind: type[Message], *fields: Any, body: bytes = b'', timeout: float | None = None,
                unwait_on_timeout: bool = False) -> tuple[Message, bytes]:
        """Send the request ``kind(rid, *fields)`` with a fresh request id and
        return the reply and its body; raise the error the server answers,
        or :class:`ColdocTasksTimeoutError` after ``timeout`` (first telling
        the server to forget the wait, with ``unwait_on_timeout``)."""
        rid, reply = self._start(kind, fields, body, None)
        if not reply.event.wait(timeout):
            self._give_up(rid, reply, unwait_on_timeout)
            raise ColdocTasksTimeoutError(f'no reply from the task server within {format_seconds(timeout)} s')
        return self._answer(reply)

    async def request_async(self, kind: type[Message], *fields: Any, body: bytes = b'',
                            timeout: float | None = None, unwait_on_timeout: bool = False) -> tuple[Message, bytes]:
        """:meth:`request`, for a coroutine: the reader thread resolves a
        future of the running loop.  If the coroutine is cancelled, a result
        that arrives meanwhile is kept in :attr:`late_results`."""
        future, wake = threadsafe_future(asyncio.get_running_loop())
        rid, reply = self._start(kind, fields, body, wake)
        try:
            arrived = await wait_future(future, timeout)
        except BaseException:
            if not self._give_up(rid, reply, unwait_on_timeout) and isinstance(reply.message, (Result, Lost)):
                self._keep_late(reply.message, reply.body)
            raise
        if not arrived:
            self._give_up(rid, reply, unwait_on_timeout)
            raise ColdocTasksTimeoutError(f'no reply from the task server within {format_seconds(timeout)} s')
        return self._answer(reply)

    def _start(self, kind: type[Message], fields: tuple, body: bytes,
               callback: Callable[[], None] | None) -> tuple[int, _Reply]:
        rid = next(self._rids)
        reply = _Reply(callback)
        self._pending[rid] = reply
        try:
            self._send(kind(rid, *fields).encode(body))
        except BaseException:
            self._pending.pop(rid, None)
            raise
        return rid, reply

    def _give_up(self, rid: int, reply: _Reply, unwait: bool) -> bool:
        """Stop waiting for the reply to ``rid``: True if it had not come
        (the server is told to forget the wait, with ``unwait``)."""
        if self._pending.pop(rid, None) is not None:
            if unwait:
                with contextlib.suppress(ColdocTasksConnectionError):
                    self.send(Unwait(rid))
            return True
        # The reader took it just now: it is filled in an instant.
        reply.event.wait()
        return False

    def _answer(self, reply: _Reply) -> tuple[Message, bytes]:
        if reply.message is None:
            raise self.broken
        if isinstance(reply.message, Error):
            raise reply.message.exception()
        return reply.message, reply.body

    def _read_loop(self) -> None:
        sock = self.sock
        receiving = RecvBuffer()
        try:
            while True:
                data = receiving.recv(sock)
                if not data:
                    raise ServerGoneError(f'the task server on {self.address} closed the connection')
                for header, body in self._reader.feed(data):
                    message = decode(header, _FROM_SERVER)
                    if isinstance(message, PushedProgress):
                        self._on_progress(message)
                        continue
                    if isinstance(message, (Pushed, PushedLost)):
                        slot = self.push_slots.pop(message.task_id, None)
                        if slot is not None:  # else every fork object of the task was dropped
                            slot.fill(message, body)
                        continue
                    if isinstance(message, Dropped):
                        raise ServerGoneError(message.message)
                    reply = self._pending.pop(message.rid, None)
                    if reply is not None:
                        reply.fill(message, body)
                    elif isinstance(message, (Result, Lost)):
                        self._keep_late(message, body)
        except ColdocTasksConnectionError as exc:
            self._break(exc)
        except (OSError, ColdocTasksProtocolError) as exc:
            self._break(ServerGoneError(f'the connection to the task server on {self.address} broke: {exc}'))

    def _on_progress(self, message: PushedProgress) -> None:
        box = self.progress_boxes.get(message.task_id)
        if box is not None:  # else no fork object of the task is left here
            box.latest = Progress(message.done, message.total, message.message, message.metadata)

    def _keep_late(self, message: Result | Lost, body: bytes) -> None:
        late = self.late_results
        late[message.task_id] = (message, body)
        if len(late) > LATE_RESULTS_KEPT:
            del late[next(iter(late))]

    def _break(self, error: ColdocTasksConnectionError) -> None:
        if self.broken is None:
            self.broken = error
            logger.debug('connection to %s broken: %s', self.address, error)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        for rid in list(self._pending):
            reply = self._pending.pop(rid, None)
            if reply is not None:
                reply.fill(None)
        for task_id in list(self.push_slots):
            slot = self.push_slots.pop(task_id, None)
            if slot is not None:
                slot.fill(None)

    def close(self) -> None:
        self._break(ServerGoneError('the connection was closed by this process'))
        self.sock.close()


_connections: dict[tuple[str, bytes], ServerConnection] = {}
_connections_lock = threading.Lock()


def get_connection(address: str, authkey: bytes) -> ServerConnection:
    """This process's connection to the server at ``address``, made (or
    remade, if it broke) on first use."""
    key = (address, authkey)
    connection = _connections.get(key)
    if connection is not None and connection.broken is None:
        return connection
    with _connections_lock:
        connection = _connections.get(key)
        if connection is None or connection.broken is not None:
            if connection is not None:
                connection.close()
            connection = _connections[key] = ServerConnection(address, authkey)
        return connection


def _forget_connections_after_fork() -> None:
    global _connections_lock
    _connections_lock = threading.Lock()
    for connection in _connections.values():
        with contextlib.suppress(OSError):
            connection.sock.close()  # the child's copy only; the parent's stays open
    _connections.clear()


os.register_at_fork(after_in_child=_forget_connections_after_fork)


def control_request(address: str, authkey: bytes, kind: type[Message], *fields: Any, timeout: float) -> Any:
    """One request on a connection of its own, for control commands (ping,
    status, stop) that must not depend on a shared connection's state;
    return the value of the server's ``Ok``."""
    connection = ServerConnection(address, authkey, connect_timeout=timeout)
    try:
        return connection.request(kind, *fields, timeout=timeout)[0].value
    finally:
        connection.close()
