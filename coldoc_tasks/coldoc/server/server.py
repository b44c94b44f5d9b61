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
import heapq
import itertools
import logging
import os
import selectors
import signal
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from ... import __version__
from ...durations import check_seconds
from ...exceptions import ColdocTasksProtocolError, ColdocTasksUnknownTaskError, ColdocTasksUsageError
from ..protocol import (
    DEFAULT_MAX_BODY,
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    REFUSAL,
    FrameReader,
    decode_header,
    encode_message,
    error_message,
    server_challenge,
    server_check_answer,
)
from ..queues import QueueConfig
from ..safefiles import UnsafePathError, clear_socket_path
from .channel import Channel
from .tasks import CANCELLED, FINAL_STATES, QUEUED, RUNNING, Task, TaskTable
from .workers import WorkerPool

logger = logging.getLogger(__name__)

_PEERCRED = struct.Struct('3i')
#: Seconds a stopping server keeps sending what clients have not read yet.
STOP_LINGER = 10.0
#: The longest duration accepted for a grace, a retention or a timeout (a year).
#: Bytes waiting to be sent to a peer above which it is not read from.
OUTBOX_HIGH_WATER = 64 * 1024 * 1024
#: Seconds the listener rests when the process is out of descriptors.
ACCEPT_PAUSE = 0.5
#: How many queued tasks ``status`` lists (it counts them all).
STATUS_QUEUED_SHOWN = 100


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Timer:
    """A callback due at a time on the loop's clock; ``cancel`` it if need be."""

    __slots__ = ('when', 'callback', 'cancelled')

    def __init__(self, when: float, callback: Callable[[], None]):
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


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


class TaskServer:
    """Serve tasks on ``socket_path`` for clients that hold ``authkey``.

    ``queues``: a list of :class:`QueueConfig` (the ``default`` queue is
    added if missing).  ``result_retention``: seconds an uncollected result
    is kept.  ``terminate_grace``: seconds between SIGTERM and SIGKILL.
    ``stop_grace``: seconds ``stop`` lets running tasks finish.
    ``on_exit``: called once the loop has ended (the caller releases its
    lock and files there).
    """

    def __init__(self, socket_path: str, authkey: bytes, queues: list[QueueConfig] | None = None, *,
                 result_retention: float = 3600.0, terminate_grace: float = 2.0, stop_grace: float = 10.0,
                 handshake_timeout: float = 5.0, max_message_size: int = DEFAULT_MAX_BODY,
                 extra_fds: list[int] | None = None):
        for name, value in (('result_retention', result_retention), ('terminate_grace', terminate_grace),
                            ('stop_grace', stop_grace), ('handshake_timeout', handshake_timeout)):
            check_seconds(name, value)
        self.socket_path = socket_path
        self.authkey = authkey
        self.handshake_timeout = handshake_timeout
        self.max_message_size = max_message_size
        self.stop_grace = stop_grace
        self.started = time.time()
        self.table = TaskTable(result_retention)
        self.pool = WorkerPool(queues or [], self.table, self, self._on_final, terminate_grace,
                               max_message_size=max_message_size)
        self.selector = selectors.DefaultSelector()
        self.connections: dict[int, Connection] = {}
        self.listener: socket.socket | None = None
        self._socket_inode = -1
        self.stopping = False
        self._stopped = False
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_ids = itertools.count()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._writers: dict[int, Channel] = {}  # channels waiting for the socket to take more
        self._interest: dict[int, int] = {}  # fd -> the selector events registered for it
        self._dirty: dict[int, Channel] = {}  # channels with messages queued in this turn
        self._extra_fds = list(extra_fds or ())
        self._unwatched_this_turn: set[int] = set()
        self._linger_deadline: float | None = None
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self.counters = {'auth_failures': 0, 'protocol_errors': 0, 'connections': 0}

    # -- the loop's services, used by WorkerPool ---------------------------------

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        self._callbacks[fd] = callback
        self.selector.register(fd, selectors.EVENT_READ)
        self._interest[fd] = selectors.EVENT_READ

    def unwatch(self, fd: int) -> None:
        if self._callbacks.pop(fd, None) is not None:
            self.selector.unregister(fd)
            self._interest.pop(fd, None)
            # The number may be reused (by a new worker) before the events of
            # this turn are all handled: those left for it are stale.
            self._unwatched_this_turn.add(fd)

    def want_write(self, channel: Channel) -> None:
        """Have what was queued on ``channel`` sent at the end of this turn of
        the loop: one ``sendmsg`` carries every message of the turn."""
        self._dirty[channel.fd] = channel

    def _flush_dirty(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for channel in dirty.values():
            if not channel.closed:
                self._flush(channel)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._timer_ids), timer))
        return timer

    def fds_to_close_in_child(self) -> list[int]:
        """Descriptors a forked worker must not keep: had it kept a client's
        socket, that client would not see the server die."""
        fds = [self.selector.fileno(), self._wakeup_r.fileno(), self._wakeup_w.fileno(), *self._extra_fds]
        fds += self._callbacks
        if self.listener is not None:
            fds.append(self.listener.fileno())
        return fds

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
        self.watch(listener.fileno(), self._accept)

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
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        self.watch(self._wakeup_r.fileno(), self._on_signal)
        previous_wakeup = signal.set_wakeup_fd(self._wakeup_w.fileno())
        handlers = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
        logger.info('coldoc task server %s (pid %d) serving on %s; queues: %s', __version__, os.getpid(),
                    self.socket_path, ', '.join(f'{q.config.name} ({q.config.concurrency}, {q.config.mode})'
                                                for q in self.pool.queues.values()))
        try:
            if on_ready is not None:
                on_ready()
            while not self._stopped:
                self._run_once()
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            self._close()

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, cancel queued tasks, let running tasks finish within
        ``grace`` seconds, then terminate them; the loop ends when no worker
        is left."""
        if self.stopping:
            return
        grace = self.stop_grace if grace is None else grace
        self.stopping = True
        logger.info('stopping: %d running tasks get %g s to finish', self.pool.running_tasks, grace)
        if self.listener is not None:
            self.unwatch(self.listener.fileno())
            self.listener.close()
            self.listener = None
            self._remove_socket()
        for task in list(self.pool.queued_tasks()):
            self.pool.cancel(task, 'the server stopped')
        self.pool.drain()
        self.call_later(grace, self._terminate_running)
        self._check_stopped()

    def _terminate_running(self) -> None:
        for worker in list(self.pool.workers.values()):
            if worker.task is not None:
                self.pool.terminate(worker.task)
        self.call_later(self.pool.terminate_grace + 1.0, self.pool.kill_all)

    def _check_stopped(self) -> None:
        if not self.stopping or self.pool.workers:
            return
        # Outcomes still queued for clients go out first, within a bound:
        # a client that does not read cannot keep the server alive.
        if self._writers or self._dirty:
            if self._linger_deadline is None:
                self._linger_deadline = time.monotonic() + STOP_LINGER
                self.call_later(STOP_LINGER, self._check_stopped)
            if time.monotonic() < self._linger_deadline:
                return
        self._stopped = True

    def _close(self) -> None:
        self.pool.kill_all()
        for connection in list(self.connections.values()):
            self._drop(connection, None)
        if self.listener is not None:
            self.listener.close()
            self._remove_socket()
        self.selector.close()
        self._wakeup_r.close()
        self._wakeup_w.close()
        logger.info('coldoc task server (pid %d) stopped', os.getpid())

    # -- the loop -------------------------------------------------------------------

    def _run_once(self) -> None:
        now = time.monotonic()
        timeout = None
        timers = self._timers
        while timers:
            when, _, timer = timers[0]
            if timer.cancelled:
                heapq.heappop(timers)
            elif when <= now:
                heapq.heappop(timers)
                timer.callback()
            else:
                timeout = when - now
                break
        if self._dirty:  # what the timers queued
            self._flush_dirty()
        next_expiry = self.table.expire(now)
        if next_expiry is not None:
            timeout = min(timeout, next_expiry - now) if timeout is not None else next_expiry - now
        self._unwatched_this_turn.clear()
        for key, events in self.selector.select(timeout):
            fd = key.fd
            if fd in self._unwatched_this_turn:
                continue
            if events & selectors.EVENT_WRITE:
                self._on_writable(fd)
            if events & selectors.EVENT_READ:
                callback = self._callbacks.get(fd)
                if callback is not None:
                    callback()
        if self._dirty:
            self._flush_dirty()
        self._check_stopped()

    def _on_writable(self, fd: int) -> None:
        channel = self._writers.get(fd)
        if channel is not None:
            self._flush(channel)

    def _flush(self, channel: Channel) -> None:
        """Send what the socket takes, and watch the channel for what it
        needs next: writable while data waits; readable unless a peer that
        does not read its replies has let too many pile up (then it is not
        read from, so it cannot make the server hold ever more)."""
        try:
            channel.flush()
        except OSError:  # the peer is gone; reading will see it and clean up
            channel.outbox.clear()
            channel.pending_bytes = 0
        fd = channel.fd
        if channel.closed or fd not in self._callbacks:
            return
        if channel.wants_write:
            self._writers[fd] = channel
            events = selectors.EVENT_WRITE
        else:
            self._writers.pop(fd, None)
            events = 0
        if channel.pending_bytes <= OUTBOX_HIGH_WATER:
            events |= selectors.EVENT_READ
        if self._interest.get(fd) != events:
            self.selector.modify(fd, events)
            self._interest[fd] = events

    def _on_signal(self) -> None:
        with contextlib.suppress(BlockingIOError):
            data = self._wakeup_r.recv(64)
            if any(signum in (signal.SIGTERM, signal.SIGINT) for signum in data):
                logger.info('signal received: stopping')
                self.stop()

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
                self.unwatch(listener.fileno())
                self.call_later(ACCEPT_PAUSE, lambda listener=listener: self._resume_accepting(listener))
                return
            try:
                pid, _, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
            except OSError:
                pid = None
            channel = Channel(sock, FrameReader(max_header=MAX_HANDSHAKE_FRAME, max_body=0))
            connection = Connection(channel, pid)
            self.connections[channel.fd] = connection
            self.counters['connections'] += 1
            self.watch(channel.fd, lambda c=connection: self._on_client_readable(c))
            connection.nonce, greeting = server_challenge()
            connection.deadline = self.call_later(self.handshake_timeout,
                                                  lambda c=connection: self._handshake_expired(c))
            self._send(connection, [greeting])

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self.listener is listener:
            self.watch(listener.fileno(), self._accept)

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
        self.unwatch(channel.fd)
        self._writers.pop(channel.fd, None)
        self._dirty.pop(channel.fd, None)
        del self.connections[channel.fd]
        channel.close()

    def _send(self, connection: Connection, pieces: list) -> None:
        connection.channel.send(pieces)
        self.want_write(connection.channel)

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
                message = decode_header(header)
                handler = self._handlers.get(message[0])
                if handler is None:
                    raise ColdocTasksProtocolError(f'unknown request {message[0]!r:.100}')
                if message[0] != 'submit' and not _is_int(message[1]):
                    raise ColdocTasksProtocolError(f'a {message[0]} request with a bad request id {message[1]!r:.100}')
                handler(self, connection, message, body)
            except (ColdocTasksProtocolError, IndexError, TypeError, ValueError) as exc:
                self._refuse(connection, f'bad request: {exc}')
                return

    def _refuse(self, connection: Connection, why: str) -> None:
        """Drop an authenticated client that broke the protocol, telling it
        why as far as its socket takes it now."""
        self.counters['protocol_errors'] += 1
        connection.channel.send(error_message(0, ColdocTasksProtocolError(f'the server dropped the connection: {why}')))
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

    # -- requests -----------------------------------------------------------------------

    def _on_submit(self, connection: Connection, message: tuple, body: bytes) -> None:
        _, task_id, queue, cmd_name, _waiter, subscribe = message
        if not isinstance(task_id, str) or task_id in self.table.tasks:
            raise ColdocTasksProtocolError(f'submit with a bad or duplicate task id {task_id!r:.100}')
        task = Task(task_id, queue if isinstance(queue, str) else 'default', str(cmd_name), body, connection.peer_pid)
        if subscribe:
            task.subscriber = connection
        self.table.add(task)
        if self.stopping:
            self.table.finish(task, CANCELLED, lost_message=f'task {task_id} was refused: the server is stopping')
            self._on_final(task)
            return
        refused = self.pool.why_refused(task.queue)
        if refused is not None:
            logger.warning('task %s (%s) of %s refused: %s', task_id, cmd_name, connection.peer, refused)
            self.table.finish(task, CANCELLED, lost_message=f'task {task_id} was refused: {refused}')
            self._on_final(task)
            return
        logger.debug('task %s (%s) queued on %s by %s', task_id, cmd_name, task.queue, connection.peer)
        self.pool.submit(task)

    def _known_task(self, connection: Connection, rid: int, task_id: str) -> Task | None:
        """The task called ``task_id``, or ``None`` after telling the client
        why it is not known."""
        if not isinstance(task_id, str):
            raise ColdocTasksProtocolError(f'a task id must be a string, not {task_id!r:.100}')
        task = self.table.tasks.get(task_id)
        if task is None:
            self._send(connection, error_message(rid, ColdocTasksUnknownTaskError(self.table.why_unknown(task_id))))
        return task

    def _on_share(self, connection: Connection, message: tuple, body: bytes) -> None:
        _, rid, task_id = message
        task = self._known_task(connection, rid, task_id)
        if task is not None:
            task.shared = True
            self._send(connection, encode_message(('ok', rid, task.state)))

    def _on_wait(self, connection: Connection, message: tuple, body: bytes) -> None:
        _, rid, task_id, waiter_task_id = message
        task = self._known_task(connection, rid, task_id)
        if task is None:
            return
        if task.state in FINAL_STATES:
            self._deliver(task, [(connection, rid, None)])
            self.table.collect(task, connection.peer_pid)
            return
        lent = None
        waiter = self.table.tasks.get(waiter_task_id) if isinstance(waiter_task_id, str) else None
        if waiter is not None and waiter.state == RUNNING:
            lent = self.pool.lend(waiter.queue)
        task.waiters.append((connection, rid, lent))
        connection.waits[rid] = task

    def _on_unwait(self, connection: Connection, message: tuple, body: bytes) -> None:
        self._unwait(connection, message[1])

    def _unwait(self, connection: Connection, rid: int) -> None:
        task = connection.waits.pop(rid, None)
        if task is None:
            return
        for entry in task.waiters:
            if entry[0] is connection and entry[1] == rid:
                task.waiters.remove(entry)
                if entry[2] is not None:
                    self.pool.give_back(entry[2])
                break

    def _on_terminate(self, connection: Connection, message: tuple, body: bytes) -> None:
        _, rid, task_id = message
        task = self._known_task(connection, rid, task_id)
        if task is None:
            return
        if task.state == QUEUED:
            self.pool.cancel(task, 'terminate() was called')
        elif task.state == RUNNING:
            self.pool.terminate(task)
        self._send(connection, encode_message(('ok', rid, task.state)))

    def _on_ping(self, connection: Connection, message: tuple, body: bytes) -> None:
        self._send(connection, encode_message(
            ('ok', message[1], {'pid': os.getpid(), 'version': __version__, 'protocol': PROTOCOL_VERSION,
                                'max_message_size': self.max_message_size, 'queues': self.pool.declared()})))

    def _on_status(self, connection: Connection, message: tuple, body: bytes) -> None:
        self._send(connection, encode_message(('ok', message[1], self.status())))

    def _on_shutdown(self, connection: Connection, message: tuple, body: bytes) -> None:
        _, rid, grace = message
        try:
            check_seconds('the stop grace', grace, none_ok=True)
        except (TypeError, ValueError) as exc:
            self._send(connection, error_message(rid, ColdocTasksUsageError(str(exc)[:300])))
            return
        logger.info('stop requested by %s', connection.peer)
        self._send(connection, encode_message(('ok', rid, os.getpid())))
        self.stop(grace)

    _handlers: dict[str, Callable[..., None]] = {
        'submit': _on_submit, 'share': _on_share, 'wait': _on_wait, 'unwait': _on_unwait, 'terminate': _on_terminate,
        'ping': _on_ping, 'status': _on_status, 'shutdown': _on_shutdown,
    }

    # -- results --------------------------------------------------------------------------

    def _on_final(self, task: Task) -> None:
        """Send a final task's outcome to whoever waits for it, and forget it
        unless a copy of its fork object elsewhere may still ask."""
        delivered = False
        if task.waiters:
            self._deliver(task, task.waiters)
            delivered = True
        subscriber, task.subscriber = task.subscriber, None
        if subscriber is not None and not subscriber.channel.closed:
            self._send(subscriber, self._outcome_message(task, 'pushed', None))
            delivered = delivered or not task.shared
        if delivered:
            self.table.collect(task, subscriber.peer_pid if subscriber is not None else task.owner_pid)

    def _outcome_message(self, task: Task, kind: str, rid: int | None) -> list:
        if task.outcome is not None:
            return encode_message((kind, rid, task.task_id), task.outcome)
        return encode_message((kind, rid, task.task_id, task.lost_message))

    def _deliver(self, task: Task, waiters: list[tuple[Connection, int, Any]]) -> None:
        """Send a final task's outcome to the clients blocked in ``wait``."""
        for connection, rid, lent in list(waiters):
            if lent is not None:
                self.pool.give_back(lent)
            connection.waits.pop(rid, None)
            self._send(connection, self._outcome_message(task, 'result' if task.outcome is not None else 'lost', rid))
        task.waiters = []

    def status(self) -> dict[str, Any]:
        """What ``status`` reports: the server, its queues, live tasks, counters."""
        now = time.time()
        running = [worker.task.describe(now) for worker in self.pool.workers.values() if worker.task is not None]
        queued = [task.describe(now) for task in itertools.islice(self.pool.queued_tasks(), STATUS_QUEUED_SHOWN)]
        queued_count = sum(queue.queued for queue in self.pool.queues.values())
        return {
            'pid': os.getpid(), 'version': __version__, 'protocol': PROTOCOL_VERSION,
            'started': self.started, 'uptime': now - self.started, 'socket': self.socket_path,
            'stopping': self.stopping,
            'queues': [queue.describe() for queue in self.pool.queues.values()],
            'workers': len(self.pool.workers),
            'tasks': running + queued,
            'tasks_queued': queued_count,
            'results_held': len(self.table.tasks) - len(running) - queued_count,
            'counters': dict(self.table.counters, **self.counters),
            'clients': len(self.connections),
        }
