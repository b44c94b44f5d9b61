"""How the task server stops: it stops accepting, deals with the queued
tasks as ``stop_queued`` says (cancel, keep for the next start, or drain),
lets running tasks finish within the grace, then terminates them, and ends
once the outcomes it owes have left (within :data:`STOP_LINGER`).  Tasks
deferred to a later ``run_after`` are kept in the journal for the next start
(with a journal, unless ``stop_queued`` is ``cancel``), else cancelled: a
drain does not wait for their time."""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

    from .deferred import DeferredTasks
    from .loop import EventLoop
    from .recorder import Recorder
    from .server import Connection
    from .workers import WorkerPool

__all__ = ['Stopping', 'STOP_LINGER']

logger = logging.getLogger(__name__)

#: Seconds a stopping server keeps sending what clients have not read yet.
STOP_LINGER = 10.0


class Stopping:
    """The stopping half of :class:`~.server.TaskServer`."""

    loop: EventLoop
    pool: WorkerPool
    deferred: DeferredTasks
    listener: socket.socket | None
    connections: dict[int, Connection]
    recorder: Recorder | None
    stop_grace: float
    stop_queued: str
    stopping: bool
    _stopped: bool
    _linger_deadline: float | None
    _drain_grace: float | None

    def _remove_socket(self) -> None:
        raise NotImplementedError

    def _drop(self, connection: Connection, why: str | None) -> None:
        raise NotImplementedError

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            logger.info('signal received: stopping')
            self.stop()

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
            self.loop.unwatch(self.listener.fileno())
            self.listener.close()
            self.listener = None
            self._remove_socket()
        queued = sum(queue.queued for queue in self.pool.queues.values())
        if self.stop_queued == 'drain' and queued:
            logger.info('stopping: the %d queued tasks run first', queued)
            self._drain_grace = grace
            return
        self._stop_running(grace)

    def _stop_running(self, grace: float) -> None:
        if self.recorder is not None and self.stop_queued in ('keep', 'drain'):
            self.deferred.put_aside()  # left in the journal, for the next start, still waiting for their time
        else:
            for task in list(self.deferred.tasks()):
                self.deferred.cancel(task, 'the server stopped')
        if self.stop_queued == 'keep':
            for queue in self.pool.queues.values():  # left in the journal, for the next start
                queue.pending.clear()
                queue.queued = 0
        for task in list(self.pool.queued_tasks()):
            self.pool.cancel(task, 'the server stopped')
        self.pool.drain()
        self.loop.call_later(grace, self._terminate_running)
        self._check_stopped()

    def _terminate_running(self) -> None:
        if self.stop_queued == 'keep' and self.recorder is not None:
            # What still runs is left to the next start, as after a crash:
            # its clients are not told an outcome, they wait for that start.
            self.recorder.stop_recording()
            for connection in list(self.connections.values()):
                self._drop(connection, None)
        for worker in list(self.pool.workers.values()):
            if worker.task is not None:
                self.pool.terminate(worker.task)
        self.loop.call_later(self.pool.terminate_grace + 1.0, self.pool.kill_all)

    def _check_stopped(self) -> None:
        if self._drain_grace is not None and not any(queue.queued for queue in self.pool.queues.values()):
            grace, self._drain_grace = self._drain_grace, None
            self._stop_running(grace)
            return
        if not self.stopping or self.pool.workers or self._drain_grace is not None:
            return
        # Outcomes still queued for clients go out first, within a bound:
        # a client that does not read cannot keep the server alive.
        if self.loop.has_output:
            if self._linger_deadline is None:
                self._linger_deadline = time.monotonic() + STOP_LINGER
                self.loop.call_later(STOP_LINGER, self._check_stopped)
            if time.monotonic() < self._linger_deadline:
                return
        self._stopped = True
