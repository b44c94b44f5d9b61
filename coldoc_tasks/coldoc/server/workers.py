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
a queue of concurrency 1.  The workers started for lent slots stay, once
idle, for ``lent_worker_keepalive`` seconds: the next chain finds them
instead of waiting for forks (see :mod:`.slots`).

A worker's death is seen at once through its pidfd: its task becomes *lost*
(or *terminated*, if ``terminate`` asked for it), naming the signal or exit
code, and the next task gets a new worker.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

from ...exceptions import ColdocTasksProtocolError
from ...forking import describe_wait_status, signal_group
from ..messages import Done, Exit, ProgressReport, Run, decode
from ..protocol import DEFAULT_MAX_BODY
from ..queues import DEFAULT_QUEUE, QueueConfig
from .loop import EventLoop
from .slots import Queue, QueueRouting, fork_worker
from .tasks import CANCELLED, DONE, FAILED, LOST, QUEUED, RUNNING, TERMINATED, Task, TaskTable
from .worker_state import Worker

logger = logging.getLogger(__name__)

class WorkerPool(QueueRouting):
    """Every queue and worker of the server.

    ``loop``: the server's :class:`~.loop.EventLoop`, which watches the
    workers' sockets and pidfds, sends what is queued for them and keeps the
    timers.
    ``on_final(task)`` is called when a task reaches a final state,
    ``on_progress(task)`` when a running task reports its progress.
    ``max_message_size``: the largest outcome a worker may send (it refuses
    a larger result itself; one that sends more anyway is killed).
    ``max_worker_rss``: bytes a reused worker may hold after a task (None: no limit).
    ``lent_worker_keepalive``: seconds an idle worker beyond the queue's limit
    (one started for a lent slot) is kept for the next task before it retires.
    """

    def __init__(self, queues: list[QueueConfig], table: TaskTable, loop: EventLoop,
                 on_final: Callable[[Task], None], terminate_grace: float, *,
                 max_message_size: int = DEFAULT_MAX_BODY, on_progress: Callable[[Task], None] | None = None,
                 max_worker_rss: int | None = None, lent_worker_keepalive: float = 5.0):
        self.max_message_size = max_message_size
        self.lent_worker_keepalive = lent_worker_keepalive
        self.max_worker_rss = max_worker_rss
        self.counters = {'recycled_for_memory': 0, 'retried_on_loss': 0}
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
        #: tasks are queued but none starts (while the journal is read back, so that priorities hold)
        self.paused = False

    # -- tasks ----------------------------------------------------------------

    def submit(self, task: Task) -> None:
        queue = self.queue_for(task.queue)
        queue.pending.push(task)
        queue.queued += 1
        self.dispatch(queue)

    def dispatch(self, queue: Queue) -> None:
        """Start queued tasks while the queue has free slots."""
        if self.paused:
            return
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
            call = task.call
            task.call = call if task.retries else None  # kept for a retry
            if self.on_start is not None:
                self.on_start(task)
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

    def _plan_trim(self, queue: Queue) -> None:
        if queue.surplus > 0 and not queue.trim_planned:
            queue.trim_planned = True
            self.loop.call_later(self.lent_worker_keepalive, lambda: self._trim(queue))

    def _trim(self, queue: Queue) -> None:
        queue.trim_planned = False
        for worker in queue.take_stale_surplus(self.lent_worker_keepalive):
            self._retire(worker)
        self._plan_trim(queue)

    # -- worker processes ---------------------------------------------------------

    def _spawn(self, queue: Queue) -> Worker | None:
        worker = fork_worker(queue, self.loop.fds_to_close_in_child(), self.max_message_size,
                             measure_memory=self.max_worker_rss is not None)
        if worker is not None:
            self.workers[worker.pid] = worker
            self.loop.watch(worker.channel.fd, lambda: self._on_readable(worker))
            self.loop.watch(worker.pidfd, lambda: self._on_exit(worker))
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
                or over_memory):
            self._retire(worker)
        else:
            queue.park(worker)
            self._plan_trim(queue)
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
        if state == LOST and self.requeue_lost(task, message):
            return
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



def _over_memory(limit: int | None, worker: Worker, task: Task, rss: int | None) -> bool:
    """Whether ``worker`` holds more than ``limit`` bytes after ``task`` (it
    is then recycled, and the reason logged)."""
    if limit is None or rss is None or rss <= limit:
        return False
    logger.info('worker %d holds %.1f MB after task %s (%s), over the limit of %.1f MB: recycling it',
                worker.pid, rss / 2**20, task.task_id, task.cmd_name, limit / 2**20)
    return True
