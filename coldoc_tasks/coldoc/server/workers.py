"""Queues, slots and worker processes, as the server sees them.

Each named queue has a concurrency limit and its waiting tasks, in order of
priority, first come first served among equals (:mod:`.pending`).  A task
leaves them when the queue has a free slot; it then goes to an idle
worker of the queue, or to a worker forked for it.  Per queue, workers are
*reused* (optionally recycled after ``max_tasks_per_worker`` tasks) or
*fresh* (one process per task).  A reused worker whose resident memory,
which it reports with each outcome, is over ``max_worker_rss`` is recycled
too, and counted (``recycled_for_memory``).

A worker blocked in ``wait()`` on another task lends its slot: the server
calls :meth:`WorkerPool.lend`, which raises the queue's limit by one until
:meth:`WorkerPool.give_back`.  So a chain of nested tasks completes even on
a queue of concurrency 1.

A worker's death is seen at once through its pidfd: its task becomes *lost*
(or *terminated*, if ``terminate`` asked for it), naming the signal or exit
code, and the next task gets a new worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from ...exceptions import ColdocTasksProtocolError
from ...forking import describe_wait_status, fork_task_process, signal_group
from ...outcome import MIN_ERROR_ROOM
from ..messages import Done, Exit, ProgressReport, Run, decode
from ..protocol import DEFAULT_MAX_BODY, FrameReader
from ..queues import ANY_QUEUE, DEFAULT_QUEUE, QueueConfig, undeclared_queue_message
from . import worker_process
from .channel import Channel
from .loop import EventLoop
from .pending import PendingTasks
from .tasks import CANCELLED, DONE, FAILED, LOST, QUEUED, RUNNING, TERMINATED, Task, TaskTable
from .worker_process import worker_main

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


class WorkerPool:
    """Every queue and worker of the server.

    ``loop``: the server's :class:`~.loop.EventLoop`, which watches the
    workers' sockets and pidfds, sends what is queued for them and keeps the
    timers.
    ``on_final(task)`` is called when a task reaches a final state,
    ``on_progress(task)`` when a running task reports its progress.
    ``max_message_size``: the largest outcome a worker may send (it refuses
    a larger result itself; one that sends more anyway is killed).
    ``max_worker_rss``: bytes a reused worker may hold after a task (None: no limit).
    """

    def __init__(self, queues: list[QueueConfig], table: TaskTable, loop: EventLoop,
                 on_final: Callable[[Task], None], terminate_grace: float, *,
                 max_message_size: int = DEFAULT_MAX_BODY, on_progress: Callable[[Task], None] | None = None,
                 max_worker_rss: int | None = None):
        self.max_message_size = max_message_size
        self.max_worker_rss = max_worker_rss
        self.counters = {'recycled_for_memory': 0}
        self.on_progress = on_progress
        self.table = table
        self.loop = loop
        self.on_final = on_final
        self.terminate_grace = terminate_grace
        self.queues: dict[str, Queue] = {}
        for config in queues:
            self.queues[config.name] = Queue(config)
        if DEFAULT_QUEUE not in self.queues:
            self.queues[DEFAULT_QUEUE] = Queue(QueueConfig())
        self.workers: dict[int, Worker] = {}
        #: the server is stopping: a worker that finishes its task leaves
        self.draining = False

    # -- tasks ----------------------------------------------------------------

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

    def submit(self, task: Task) -> None:
        queue = self.queue_for(task.queue)
        queue.pending.push(task)
        queue.queued += 1
        self.dispatch(queue)

    def dispatch(self, queue: Queue) -> None:
        """Start queued tasks while the queue has free slots."""
        pending = queue.pending
        while queue.running < queue.limit and (task := pending.first()) is not None:
            if task.state != QUEUED:  # cancelled while it waited
                pending.pop()
                continue
            worker = queue.idle.pop() if queue.idle else self._spawn(queue)
            if worker is None:
                if not queue.retry_planned:
                    queue.retry_planned = True
                    self.loop.call_later(1.0, lambda: self._retry_dispatch(queue))
                return
            pending.pop()
            queue.queued -= 1
            worker.task = task
            task.state = RUNNING
            task.started = time.time()
            task.worker_pid = worker.pid
            queue.running += 1
            call, task.call = task.call, None
            worker.channel.send(Run(task.task_id).encode(call))
            self.loop.want_write(worker.channel)
            logger.debug('task %s (%s) started in worker %d', task.task_id, task.cmd_name, worker.pid)
        if queue.config.mode == 'fresh' and not queue.idle and not queue.spare_planned and not self.draining:
            # Fork the next task's process now, off its critical path: the
            # timer runs after this turn of the loop has sent the task out.
            queue.spare_planned = True
            self.loop.call_later(0, lambda: self._fork_spare(queue))

    def _retry_dispatch(self, queue: Queue) -> None:
        queue.retry_planned = False
        self.dispatch(queue)

    def _fork_spare(self, queue: Queue) -> None:
        queue.spare_planned = False
        if not queue.idle and not self.draining:
            worker = self._spawn(queue)
            if worker is not None:
                queue.idle.append(worker)

    def cancel(self, task: Task, why: str) -> None:
        """Cancel a queued task: it will never run."""
        self.queue_for(task.queue).queued -= 1
        self.table.finish(task, CANCELLED, lost_message=f'task {task.task_id} was cancelled before it ran: {why}')
        logger.info('task %s (%s) cancelled: %s', task.task_id, task.cmd_name, why)
        self.on_final(task)

    def terminate(self, task: Task) -> None:
        """SIGTERM a running task's process group; SIGKILL it after the grace."""
        worker = self.workers.get(task.worker_pid)
        if worker is None or worker.task is not task or task.terminating:
            return
        task.terminating = True
        logger.info('task %s (%s): terminating worker %d', task.task_id, task.cmd_name, worker.pid)
        signal_group(worker.pid, signal.SIGTERM)
        worker.kill_timer = self.loop.call_later(self.terminate_grace, lambda: self._kill(worker))

    def _kill(self, worker: Worker) -> None:
        if worker.pid in self.workers:
            logger.info('worker %d outlived the grace of %g s: SIGKILL', worker.pid, self.terminate_grace)
            signal_group(worker.pid, signal.SIGKILL)

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

    # -- worker processes ---------------------------------------------------------

    def _spawn(self, queue: Queue) -> Worker | None:
        for hook in worker_process.BEFORE_FORK_HOOKS:
            try:
                hook()
            except Exception:
                logger.exception('a before-fork hook failed')
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        close_in_child = [*self.loop.fds_to_close_in_child(), parent_sock.fileno()]
        server_pid = os.getpid()
        try:
            pid = fork_task_process(ignore_sigint=True)
        except OSError as exc:
            logger.error('cannot fork a worker for queue %s: %s; retrying in 1 s', queue.config.name, exc)
            parent_sock.close()
            child_sock.close()
            return None
        if pid == 0:
            worker_main(child_sock, close_in_child, server_pid, queue.config.mode == 'fresh', self.max_message_size,
                        measure_memory=self.max_worker_rss is not None)
        child_sock.close()
        pidfd = os.pidfd_open(pid)
        reader = FrameReader(max_body=max(self.max_message_size, MIN_ERROR_ROOM))
        worker = Worker(pid, Channel(parent_sock, reader), pidfd, queue)
        self.workers[pid] = worker
        self.loop.watch(worker.channel.fd, lambda: self._on_readable(worker))
        self.loop.watch(pidfd, lambda: self._on_exit(worker))
        logger.debug('worker %d started for queue %s', pid, queue.config.name)
        return worker

    def _on_readable(self, worker: Worker) -> None:
        try:
            frames = worker.channel.receive()
            if frames is None:  # the worker is exiting; its pidfd says how
                self.loop.unwatch(worker.channel.fd)
                return
            for header, body in frames:
                message = decode(header, (Done, ProgressReport))
                if isinstance(message, ProgressReport):
                    self._on_progress(worker, message)
                else:
                    self._on_done(worker, message, body)
        except ColdocTasksProtocolError as exc:  # (an OSError too: caught first)
            # A task can do anything in its worker, even write to this socket.
            self._fault(worker, f'it sent what the server does not accept ({exc})')
        except OSError:
            self.loop.unwatch(worker.channel.fd)

    def _fault(self, worker: Worker, why: str) -> None:
        if worker.fault is None:
            worker.fault = why
            logger.error('worker %d: %s: killing it', worker.pid, why)
            self.loop.unwatch(worker.channel.fd)
            signal_group(worker.pid, signal.SIGKILL)

    def _on_progress(self, worker: Worker, message: ProgressReport) -> None:
        task = worker.task
        if task is None or task.task_id != message.task_id:
            return  # a report that crossed the task's end (a task's thread may outlive it)
        task.progress = (message.done, message.total, message.message, message.metadata)
        if self.on_progress is not None:
            self.on_progress(task)

    def _on_done(self, worker: Worker, message: Done, outcome: bytes) -> None:
        task, queue = worker.task, worker.queue
        if task is None or task.task_id != message.task_id:
            logger.error('worker %d reported task %s, which it was not running', worker.pid, message.task_id)
            return
        worker.task = None
        worker.tasks_done += 1
        queue.running -= 1
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
            worker.kill_timer = None
        self.table.finish(task, FAILED if message.failed else DONE, outcome=outcome)
        logger.debug('task %s (%s) %s in %.3f s', task.task_id, task.cmd_name, task.state,
                    task.finished - task.started)
        config = queue.config
        over_memory = _over_memory(self.max_worker_rss, worker, task, message.rss)
        self.counters['recycled_for_memory'] += over_memory
        if (config.mode == 'fresh' or task.terminating or self.draining or worker.retiring
                or (config.max_tasks_per_worker and worker.tasks_done >= config.max_tasks_per_worker)
                or over_memory
                or queue.running + len(queue.idle) >= config.concurrency):
            self._retire(worker)
        else:
            queue.idle.append(worker)
        self.on_final(task)
        self.dispatch(queue)

    def _retire(self, worker: Worker) -> None:
        if not worker.retiring:
            worker.retiring = True
            if worker.queue.config.mode != 'fresh' or not worker.tasks_done:  # else it leaves by itself
                worker.channel.send(Exit().encode())
                self.loop.want_write(worker.channel)

    def _on_exit(self, worker: Worker) -> None:
        try:
            pid, status = os.waitpid(worker.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = worker.pid, 0
        if not pid:
            return  # not gone after all
        # What the worker sent before it died counts: read it first (and a
        # dead worker must not go back to the idle ones).
        expected, worker.retiring = worker.retiring, True
        if not worker.channel.closed and worker.fault is None:
            self._on_readable(worker)
        self.loop.unwatch(worker.pidfd)
        os.close(worker.pidfd)
        self.loop.unwatch(worker.channel.fd)
        worker.channel.close()
        del self.workers[worker.pid]
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
        queue = worker.queue
        if worker in queue.idle:
            queue.idle.remove(worker)
        task = worker.task
        how = describe_wait_status(status)
        if task is None:
            if not expected:
                logger.warning('idle worker %d of queue %s %s', worker.pid, queue.config.name, how)
            return
        queue.running -= 1
        if task.terminating:
            state, message = TERMINATED, f'task {task.task_id} was terminated (its worker {worker.pid} {how})'
        elif worker.fault is not None:
            state, message = LOST, f'task {task.task_id}: its worker process {worker.pid} was killed: {worker.fault}'
        else:
            state, message = LOST, f'task {task.task_id}: its worker process {worker.pid} {how} during the task'
        self.table.finish(task, state, lost_message=message)
        logger.warning('%s (%s)', message, task.cmd_name)
        self.on_final(task)
        self.dispatch(queue)

    def drain(self) -> None:
        """Retire idle workers now, and busy ones when their task ends."""
        self.draining = True
        for queue in self.queues.values():
            for worker in list(queue.idle):
                self._retire(worker)

    def kill_all(self) -> None:
        """SIGKILL every worker (the server is going away)."""
        for worker in self.workers.values():
            signal_group(worker.pid, signal.SIGKILL)

    def queued_tasks(self):
        for queue in self.queues.values():
            for task in queue.pending:
                if task.state == QUEUED:
                    yield task


def _over_memory(limit: int | None, worker: Worker, task: Task, rss: int | None) -> bool:
    """Whether ``worker`` holds more than ``limit`` bytes after ``task`` (it
    is then recycled, and the reason logged)."""
    if limit is None or rss is None or rss <= limit:
        return False
    logger.info('worker %d holds %.1f MB after task %s (%s), over the limit of %.1f MB: recycling it',
                worker.pid, rss / 2**20, task.task_id, task.cmd_name, limit / 2**20)
    return True
