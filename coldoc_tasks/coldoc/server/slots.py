"""The queues and workers of the server's pool, as records, and the rules
that route a task to its queue, lend a waiting worker's slot, and run a
task again when its worker was lost and it asked for it
(``retry_on_loss``)."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any

from ..queues import ANY_QUEUE, DEFAULT_QUEUE, QueueConfig, undeclared_queue_message
from .channel import Channel
from .tasks import QUEUED, Task

__all__ = ['Queue', 'Worker', 'QueueRouting']

logger = logging.getLogger(__name__)


class Queue:
    """A queue's FIFO, its slots and its workers."""

    def __init__(self, config: QueueConfig):
        self.config = config
        self.pending: collections.deque[Task] = collections.deque()
        self.queued = 0
        self.running = 0
        self.borrowed = 0
        # workers waiting for a task; in fresh mode, the one forked in advance
        self.idle: list[Worker] = []
        self.spare_planned = False
        self.retry_planned = False  # a dispatch after a failed fork

    @property
    def limit(self) -> int:
        return self.config.concurrency + self.borrowed

    def describe(self) -> dict[str, Any]:
        config = self.config
        return {'name': config.name, 'concurrency': config.concurrency, 'mode': config.mode,
                'max_tasks_per_worker': config.max_tasks_per_worker, 'running': self.running,
                'queued': self.queued, 'lent_slots': self.borrowed, 'idle_workers': len(self.idle)}


class Worker:
    """A worker process: its pid, its socket, its pidfd, and its task."""

    __slots__ = ('pid', 'channel', 'pidfd', 'queue', 'task', 'tasks_done', 'retiring', 'kill_timer', 'fault')

    def __init__(self, pid: int, channel: Channel, pidfd: int, queue: Queue):
        self.pid = pid
        self.channel = channel
        self.pidfd = pidfd
        self.queue = queue
        self.task: Task | None = None
        self.tasks_done = 0
        self.retiring = False
        self.kill_timer: Any = None
        # why the server killed it, if it did for what it sent
        self.fault: str | None = None


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
