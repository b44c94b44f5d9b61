"""The requests of clients, as the task server answers them, and the
delivery of outcomes: the request half of :class:`~.server.TaskServer`,
which holds the connections, the task table and the worker pool these
methods use."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ... import __version__
from ...durations import check_seconds
from ...exceptions import ColdocTasksProtocolError, ColdocTasksUnknownTaskError, ColdocTasksUsageError
from ..messages import (
    Describe,
    Error,
    Lost,
    Ok,
    Ping,
    Pushed,
    PushedLost,
    PushedProgress,
    Result,
    Share,
    Shutdown,
    Status,
    Submit,
    Terminate,
    Unwait,
    Wait,
)
from ..protocol import PROTOCOL_VERSION
from ..schedule import priority_problem
from .deferred import DeferredTasks
from .memory import resident_bytes
from .tasks import CANCELLED, DEFERRED, FINAL_STATES, QUEUED, RUNNING, SERVED_COPY, SERVED_SUBMITTER, Task, TaskTable
from .workers import WorkerPool

if TYPE_CHECKING:
    from .recorder import Recorder
    from .server import Connection

__all__ = ['Requests']

logger = logging.getLogger(__name__)

#: How many queued tasks ``status`` lists (it counts them all).
STATUS_QUEUED_SHOWN = 100


class Requests:
    """What the server does for each request (``_handlers`` maps a request
    name to its method), and how outcomes reach their waiters."""

    table: TaskTable
    pool: WorkerPool
    deferred: DeferredTasks
    connections: dict
    counters: dict
    stopping: bool
    started: float
    socket_path: str
    max_message_size: int
    #: the journal's side of the server, if it has one
    recorder: Recorder | None = None

    def _send(self, connection: Connection, pieces: list) -> None:
        raise NotImplementedError

    def stop(self, grace: float | None = None) -> None:
        raise NotImplementedError

    def _on_submit(self, connection: Connection, message: Submit, body: bytes) -> None:
        if message.retry_on_loss < 0:
            raise ValueError(f'retry_on_loss must be >= 0, not {message.retry_on_loss}')
        if not 0 <= message.record_size <= len(body):
            raise ColdocTasksProtocolError(f'submit with a record of {message.record_size} bytes in a body of '
                                           f'{len(body)}')
        known = self.table.tasks.get(message.task_id)
        if known is not None or (self.recorder is not None and self.recorder.forgotten(message.task_id)):
            if self.recorder is None:
                raise ColdocTasksProtocolError(f'submit with a duplicate task id {message.task_id!r:.100}')
            self.recorder.resubmitted(connection, message, known)
            return
        self._accept_task(message, body, connection)

    def _accept_task(self, message: Submit, body: bytes, connection: Connection | None,
                submitted: float | None = None) -> Task:
        """Take a task into its queue (or hold it until its ``run_after``), or
        refuse it (then its outcome says why); ``connection`` is None for a
        task read back from the journal."""
        task_id, cmd_name, record_size = message.task_id, message.cmd_name, message.record_size
        call, record = body, b''
        if record_size:  # the call is not copied: a view of it goes to the worker
            view = memoryview(body)
            call, record = view[:len(body) - record_size], bytes(view[len(body) - record_size:])
        task = Task(task_id, message.queue, cmd_name, call, connection and connection.peer_pid,
                    priority=message.priority, run_after=message.run_after, record=record)
        task.retries = message.retry_on_loss
        if submitted is not None:
            task.submitted = submitted
        if message.subscribe and connection is not None:
            task.subscriber = connection
        self.table.add(task)
        if self.stopping:
            self.table.finish(task, CANCELLED, lost_message=f'task {task_id} was refused: the server is stopping')
            self._on_final(task)
            return task
        refused = self.pool.why_refused(task.queue) or priority_problem(task.priority)
        if refused is not None:
            logger.warning('task %s (%s) refused: %s', task_id, cmd_name, refused)
            self.table.finish(task, CANCELLED, lost_message=f'task {task_id} was refused: {refused}')
            self._on_final(task)
            return task
        if self.recorder is not None:
            self.recorder.submitted(task, message, body)
        if task.run_after is not None and task.run_after > time.time():
            logger.debug('task %s (%s) deferred on %s', task_id, cmd_name, task.queue)
            self.deferred.hold(task, task.run_after)
            return task
        logger.debug('task %s (%s) queued on %s', task_id, cmd_name, task.queue)
        self.pool.submit(task)
        return task

    def _on_describe(self, connection: Connection, message: Describe, body: bytes) -> None:
        task = self._known_task(connection, message.rid, message.task_id)
        if task is None:
            return
        facts = task.describe(time.time())
        facts.update(finished=task.finished, lost_message=task.lost_message, record_size=len(task.record),
                     outcome_size=None if task.outcome is None else len(task.outcome))
        pieces = [piece for piece in (task.record, task.outcome) if piece]
        self._send(connection, Ok(message.rid, facts).encode(pieces))

    def _known_task(self, connection: Connection, rid: int, task_id: str) -> Task | None:
        """The task called ``task_id``, or ``None`` after telling the client
        why it is not known."""
        task = self.table.tasks.get(task_id)
        if task is None:
            error = ColdocTasksUnknownTaskError(self.table.why_unknown(task_id))
            self._send(connection, Error.of(rid, error).encode())
        return task

    def _on_share(self, connection: Connection, message: Share, body: bytes) -> None:
        task = self._known_task(connection, message.rid, message.task_id)
        if task is not None:
            task.shared = True
            if self.recorder is not None:
                self.recorder.shared(task)
            self._send(connection, Ok(message.rid, task.state).encode())

    def _on_wait(self, connection: Connection, message: Wait, body: bytes) -> None:
        rid, waiter_task_id = message.rid, message.waiter_task_id
        task = self._known_task(connection, rid, message.task_id)
        if task is None:
            return
        if task.state in FINAL_STATES:
            self._deliver(task, [(connection, rid, None)])
            if self.recorder is None:
                self.table.collect(task, connection.peer_pid)
            else:
                self._served(task, self._who(task, [connection]), connection.peer_pid)
            return
        lent = None
        waiter = self.table.tasks.get(waiter_task_id) if waiter_task_id is not None else None
        if waiter is not None and waiter.state == RUNNING:
            lent = self.pool.lend(waiter.queue)
        task.waiters.append((connection, rid, lent))
        connection.waits[rid] = task
        if task.progress is not None:
            self._send(connection, PushedProgress(task.task_id, *task.progress).encode())

    def _on_unwait(self, connection: Connection, message: Unwait, body: bytes) -> None:
        self._unwait(connection, message.rid)

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

    def _on_terminate(self, connection: Connection, message: Terminate, body: bytes) -> None:
        rid = message.rid
        task = self._known_task(connection, rid, message.task_id)
        if task is None:
            return
        if task.state == QUEUED:
            self.pool.cancel(task, 'terminate() was called')
        elif task.state == DEFERRED:
            self.deferred.cancel(task, 'terminate() was called')
        elif task.state == RUNNING:
            self.pool.terminate(task)
        self._send(connection, Ok(rid, task.state).encode())

    def _on_ping(self, connection: Connection, message: Ping, body: bytes) -> None:
        self._send(connection, Ok(message.rid, {
            'pid': os.getpid(), 'version': __version__, 'protocol': PROTOCOL_VERSION,
            'max_message_size': self.max_message_size, 'queues': self.pool.declared(),
            'journal': self.recorder and self.recorder.journal_id}).encode())

    def _on_status(self, connection: Connection, message: Status, body: bytes) -> None:
        self._send(connection, Ok(message.rid, self.status()).encode())

    def _on_shutdown(self, connection: Connection, message: Shutdown, body: bytes) -> None:
        rid, grace = message.rid, message.grace
        try:
            check_seconds('the stop grace', grace, none_ok=True)
        except (TypeError, ValueError) as exc:
            self._send(connection, Error.of(rid, ColdocTasksUsageError(str(exc)[:300])).encode())
            return
        logger.info('stop requested by %s', connection.peer)
        self._send(connection, Ok(rid, os.getpid()).encode())
        self.stop(grace)

    _handlers: dict[type, Callable[..., None]] = {
        Submit: _on_submit, Describe: _on_describe, Share: _on_share, Wait: _on_wait, Unwait: _on_unwait,
        Terminate: _on_terminate, Ping: _on_ping, Status: _on_status, Shutdown: _on_shutdown,
    }

    # -- results --------------------------------------------------------------------------

    def _on_progress(self, task: Task) -> None:
        """Push a running task's latest report to its subscriber and to the
        clients waiting for it (the worker sends a few a second at most)."""
        pieces = PushedProgress(task.task_id, *task.progress).encode()
        targets = {id(connection): connection for connection, _, _ in task.waiters}
        if task.subscriber is not None:
            targets[id(task.subscriber)] = task.subscriber
        for connection in targets.values():
            if not connection.channel.closed:
                self._send(connection, pieces)

    def _on_final(self, task: Task) -> None:
        """Send a final task's outcome to whoever waits for it, and forget it
        unless a copy of its fork object elsewhere may still ask."""
        if self.recorder is not None:
            self.recorder.finished(task)
        subscriber, task.subscriber = task.subscriber, None
        if subscriber is not None and subscriber.channel.closed:
            subscriber = None
        delivered = bool(task.waiters)
        served = 0
        if task.waiters:
            if self.recorder is not None:
                served = self._who(task, [connection for connection, _, _ in task.waiters])
            self._deliver(task, task.waiters)
        if subscriber is not None:
            if task.outcome is not None:
                self._send(subscriber, Pushed(task.task_id).encode(task.outcome))
            else:
                self._send(subscriber, PushedLost(task.task_id, task.lost_message).encode())
            served |= SERVED_SUBMITTER
            delivered = delivered or not task.shared
        by_pid = subscriber.peer_pid if subscriber is not None else task.owner_pid
        if self.recorder is not None:
            self._served(task, served, by_pid)
        elif delivered:
            self.table.collect(task, by_pid)

    @staticmethod
    def _who(task: Task, connections: list[Connection]) -> int:
        """Who ``connections`` are to ``task``: bits ``SERVED_*``."""
        served = 0
        for connection in connections:
            served |= SERVED_SUBMITTER if connection.peer_pid == task.owner_pid else SERVED_COPY
        return served

    def _served(self, task: Task, served: int, by_pid: int | None) -> None:
        """On a server with a journal, ``served`` (bits) got the outcome of
        ``task``: forget it once it may be.  That is at once, or, for a task
        with a copy of its fork object elsewhere, once both the submitter
        and a copy had it (a copy that waited across a restart may be
        served while the submitter is not back yet)."""
        if not served:
            return
        task.served |= served
        if not task.shared or task.served == SERVED_SUBMITTER | SERVED_COPY:
            self.table.collect(task, by_pid)
        else:
            self.recorder.served(task)

    @staticmethod
    def _outcome_message(task: Task, rid: int) -> list:
        if task.outcome is not None:
            return Result(rid, task.task_id).encode(task.outcome)
        return Lost(rid, task.task_id, task.lost_message).encode()

    def _deliver(self, task: Task, waiters: list[tuple[Connection, int, Any]]) -> None:
        """Send a final task's outcome to the clients blocked in ``wait``."""
        for connection, rid, lent in list(waiters):
            if lent is not None:
                self.pool.give_back(lent)
            connection.waits.pop(rid, None)
            self._send(connection, self._outcome_message(task, rid))
        task.waiters = []

    def status(self) -> dict[str, Any]:
        """What ``status`` reports: the server, its queues, workers, live tasks,
        the last tasks that ended (and failed), counters."""
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
            'worker_processes': [worker.describe(now) for worker in self.pool.workers.values()],
            'tasks': running + queued,
            'tasks_queued': queued_count,
            'tasks_deferred': len(self.deferred),
            'results_held': len(self.table.tasks) - len(running) - queued_count - len(self.deferred),
            'counters': dict(self.table.counters, **self.counters, **self.pool.counters),
            'max_memory_per_worker': self.pool.max_worker_rss and self.pool.max_worker_rss // 2**20,
            'lent_worker_keepalive': self.pool.lent_worker_keepalive,
            'clients': len(self.connections),
            'rss': resident_bytes(),
            **self.table.history.describe(),
            'journal': self.recorder and self.recorder.journal.path,
        }
