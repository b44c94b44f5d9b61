"""The queues of the server's pool as records, their slots and idle workers,
the rules that route a task to its queue, lend a waiting worker's slot, and
run a task again when its worker was lost and it asked for it
(``retry_on_loss``); forking a worker.

A queue runs at most ``concurrency`` tasks, plus one for each of its workers
blocked in ``wait()`` (a *lent* slot).  Workers started for lent slots are
beyond the queue's concurrency: once idle they are *surplus*, kept for
``lent_worker_keepalive`` seconds, so that the next nested task finds a
worker instead of waiting for a fork, then retired.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ...forking import fork_task_process
from ...outcome import MIN_ERROR_ROOM
from ..protocol import FrameReader
from ..queues import ANY_QUEUE, DEFAULT_QUEUE, QueueConfig, undeclared_queue_message
from . import worker_process
from .channel import Channel
from .pending import PendingTasks
from .tasks import QUEUED, Task
from .worker_state import Worker

__all__ = ['Queue', 'QueueRouting', 'fork_worker']

logger = logging.getLogger(__name__)


class Queue:
    """A queue's waiting tasks, its slots and its workers."""

    def __init__(self, config: QueueConfig):
        self.config = config
        self.pending = PendingTasks()
        self.queued = 0
        self.running = 0
        self.borrowed = 0
        # workers waiting for a task; in fresh mode, the one forked in advance
        self.idle: list[Worker] = []
        self.spare_planned = False
        self.retry_planned = False  # a dispatch after a failed fork
        self.trim_planned = False  # a look for surplus workers idle too long

    @property
    def limit(self) -> int:
        return self.config.concurrency + self.borrowed

    @property
    def surplus(self) -> int:
        """How many workers the queue has beyond its limit (lent slots included)."""
        return self.running + len(self.idle) - self.limit

    def park(self, worker: Worker) -> None:
        """``worker`` is done with its task and waits for the next one."""
        worker.idle_since = time.monotonic()
        self.idle.append(worker)

    def take_stale_surplus(self, keepalive: float) -> list[Worker]:
        """Remove and return the surplus idle workers that have waited
        ``keepalive`` seconds or more, oldest first (``idle`` is in the order
        workers were parked; a task takes the most recent one)."""
        old = time.monotonic() - keepalive
        stale = [worker for worker in self.idle[:max(self.surplus, 0)] if worker.idle_since <= old]
        for worker in stale:
            self.idle.remove(worker)
        return stale

    def describe(self) -> dict[str, Any]:
        config = self.config
        return {'name': config.name, 'concurrency': config.concurrency, 'mode': config.mode,
                'max_tasks_per_worker': config.max_tasks_per_worker, 'running': self.running,
                'queued': self.queued, 'lent_slots': self.borrowed, 'idle_workers': len(self.idle)}


def fork_worker(queue: Queue, close_in_child: list[int], max_message_size: int, *,
                measure_memory: bool) -> Worker | None:
    """Fork a worker process for ``queue``, connected to this one by a socket
    pair; None if the fork failed (the caller retries later).  The before-fork
    hooks run first; the child closes ``close_in_child``."""
    for hook in worker_process.BEFORE_FORK_HOOKS:
        try:
            hook()
        except Exception:
            logger.exception('a before-fork hook failed')
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    close_in_child = [*close_in_child, parent_sock.fileno()]
    server_pid = os.getpid()
    try:
        pid = fork_task_process(ignore_sigint=True)
    except OSError as exc:
        logger.error('cannot fork a worker for queue %s: %s; retrying in 1 s', queue.config.name, exc)
        parent_sock.close()
        child_sock.close()
        return None
    if pid == 0:
        worker_process.worker_main(child_sock, close_in_child, server_pid, queue.config.mode == 'fresh',
                                   max_message_size, measure_memory=measure_memory)
    child_sock.close()
    pidfd = os.pidfd_open(pid)
    reader = FrameReader(max_body=max(max_message_size, MIN_ERROR_ROOM))
    logger.debug('worker %d started for queue %s', pid, queue.config.name)
    return Worker(pid, Channel(parent_sock, reader), pidfd, queue)


class QueueRouting:
    """The part of :class:`~.workers.WorkerPool` that routes tasks to queues
    and keeps their slots; the pool implements :meth:`submit`."""

    queues: dict[str, Queue]
    workers: dict[int, Worker]
    counters: dict[str, int]
    draining: bool
    #: called when a task starts, and when a lost one is queued again (the journal records both)
    on_start: Callable[[Task], None] | None = None
    on_requeue: Callable[[Task], None] | None = None

    def submit(self, task: Task) -> None:
        raise NotImplementedError

    def dispatch(self, queue: Queue) -> None:
        raise NotImplementedError

    def declared(self) -> list[str]:
        """The names of the queues this server runs (``*`` among them if it
        accepts any other name)."""
        return list(self.queues)

    def why_refused(self, name: str) -> str | None:
        """Why a task on the queue ``name`` cannot be accepted, or None if it can.

        The rule: a task runs on the queue its name declares; a name nobody
        declared is refused (a typo must not go unnoticed, nor get a
        concurrency of its own), unless the ``*`` queue is declared: then it
        runs there, and every such name shares that queue's limit.
        """
        if name in self.queues or ANY_QUEUE in self.queues:
            return None
        return undeclared_queue_message(name, self.declared())

    def queue_for(self, name: str | None) -> Queue:
        """The queue that runs tasks on ``name`` (see :meth:`why_refused`)."""
        name = name or DEFAULT_QUEUE
        queue = self.queues.get(name) or self.queues.get(ANY_QUEUE)
        if queue is None:
            raise KeyError(undeclared_queue_message(name, self.declared()))
        return queue

    def lend(self, queue_name: str) -> Queue:
        """A worker of ``queue_name`` blocks waiting: lend its slot."""
        queue = self.queue_for(queue_name)
        queue.borrowed += 1
        self.dispatch(queue)
        return queue

    def give_back(self, queue: Queue) -> None:
        queue.borrowed -= 1

    @property
    def running_tasks(self) -> int:
        return sum(queue.running for queue in self.queues.values())

    def requeue_lost(self, task: Task, why: str) -> bool:
        """Queue ``task``, whose worker was lost, again if it asked for a
        retry (``retry_on_loss``) and has retries left: True if it did."""
        if task.retries <= 0 or task.call is None or self.draining:
            return False
        task.retries -= 1
        task.state, task.started, task.worker_pid, task.progress = QUEUED, None, None, None
        self.counters['retried_on_loss'] += 1
        logger.warning('%s (%s): running it again (retry_on_loss: %d retries left)', why, task.cmd_name,
                       task.retries)
        if self.on_requeue is not None:
            self.on_requeue(task)
        self.submit(task)
        return True

    def queued_tasks(self):
        for queue in self.queues.values():
            for task in queue.pending:
                if task.state == QUEUED:
                    yield task
