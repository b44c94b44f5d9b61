"""The journal's side of the task server: what it records of each task, and
how a server started on a journal goes on where the last one stopped.

Recorded (see :mod:`.journal` for the file): a task accepted into a queue
(its ``Submit`` as it came, and the call), its start, a retry after its
worker was lost, the sharing of its outcome, its outcome, and its collection
or expiry.  The records of a turn of the event loop are written and synced
in one batch before anything the turn queued for a peer leaves the server
(:attr:`.loop.EventLoop.before_output`); a collection is recorded only once
the outcome has left the server, so that an outcome a crash kept from its
waiter is still there for it after the restart.

At start (:meth:`Recorder.recover`), every task the journal holds comes
back, in the journal's order:

- queued: queued again, through the same path as a new ``Submit`` (so every
  field of the message counts as it did);
- running when the server stopped: queued again if it asked for it
  (``retry_on_loss``, counting the losses it had) else *lost*, with a
  message saying why;
- with an outcome not yet collected: kept, for the rest of its retention.
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING

from ...exceptions import ColdocTasksJournalError, ColdocTasksProtocolError
from ..messages import PushedLost, Submit, decode
from .journal import Journal, RecoveredTask
from .tasks import FINAL_STATES, LOST, Task

if TYPE_CHECKING:
    from .server import Connection, TaskServer

__all__ = ['Recorder']

logger = logging.getLogger(__name__)

#: Seconds between two syncs of the journal with ``journal_sync='second'``.
SYNC_INTERVAL = 1.0


class Recorder:
    """Records what ``server`` does with its tasks in ``journal``."""

    def __init__(self, server: TaskServer, journal: Journal, sync: str = 'batch'):
        self.server = server
        self.journal = journal
        self.journal_id = journal.journal_id
        self._recovered: set[str] = set()  # the ids of the tasks read back from the journal
        #: False once the server stops recording (``stop`` keeping its tasks for the next start)
        self.recording = True
        server.recorder = self
        server.table.on_drop = journal.dropped
        server.pool.on_start = self.started
        server.pool.on_requeue = self.requeued
        server.loop.before_output = self.commit
        if sync == 'second':
            journal.sync_each_batch = False
            server.loop.call_later(SYNC_INTERVAL, self._sync_now)

    def _sync_now(self) -> None:
        if self.recording:
            self.journal.sync()
        self.server.loop.call_later(SYNC_INTERVAL, self._sync_now)

    # -- what happens -----------------------------------------------------------------------

    def submitted(self, task: Task, message: Submit, call: bytes) -> None:
        self.journal.submitted(task.task_id, message.header(), call, task.submitted)

    def started(self, task: Task) -> None:
        self.journal.started(task.task_id)

    def requeued(self, task: Task) -> None:
        self.journal.requeued(task.task_id)

    def shared(self, task: Task) -> None:
        self.journal.shared(task.task_id)

    def served(self, task: Task) -> None:
        self.journal.served(task.task_id, task.served)

    def finished(self, task: Task) -> None:
        self.journal.finished(task.task_id, task.state, task.finished, task.outcome, task.lost_message)

    def commit(self) -> None:
        """Write the records of this turn (before its output goes out)."""
        if not self.recording:
            return
        journal = self.journal
        loop = self.server.loop
        journal.commit(output_sent=not loop.output_blocked, output_follows=loop.output_queued)
        if journal.wants_compaction():
            journal.compact()

    def stop_recording(self) -> None:
        """Record nothing more: what still runs is left as running, for the
        next start to retry or report lost (``stop`` that keeps the queue)."""
        if self.recording:
            self.commit()
            self.journal.sync()
            self.recording = False

    def close(self, output_sent: bool) -> None:
        """Write what is left (``output_sent``: every outcome left the
        server, so their collections count) and close the journal."""
        if self.recording:
            self.journal.commit(output_sent)
            self.journal.commit(output_sent)  # the collections of the last turn too
        self.journal.close()

    # -- a client back after a restart -----------------------------------------------------

    def forgotten(self, task_id: str) -> bool:
        """Whether ``task_id`` came from the journal and was collected or
        expired since (so that a client sending its Submit again is told,
        and the task does not run twice).  Only a task of an earlier server
        is sent again: a client sends a Submit again when its server died."""
        return task_id in self._recovered and task_id not in self.server.table.tasks

    def resubmitted(self, connection: Connection, message: Submit, task: Task | None) -> None:
        """A client sends the Submit of a task this server knows again: it
        lost its connection to a server that stopped, and wants the outcome.
        Nothing runs twice: the client is made the task's subscriber."""
        server = self.server
        logger.info('task %s (%s) submitted again by %s after a restart', message.task_id, message.cmd_name,
                    connection.peer)
        if not message.subscribe:
            return
        if task is None:
            server._send(connection, PushedLost(message.task_id, server.table.why_unknown(message.task_id)).encode())
            return
        task.subscriber = connection
        if task.state in FINAL_STATES and not task.waiters:
            server._on_final(task)

    # -- start ----------------------------------------------------------------------------------

    def recover(self, recovered: list[RecoveredTask]) -> None:
        """Bring back the tasks of the journal (in its order)."""
        server = self.server
        counts: collections.Counter = collections.Counter()
        self._recovered = {item.task_id for item in recovered}
        server.pool.paused = True  # every task is queued before any starts: priorities order them, not the journal
        try:
            self._recover(recovered, counts)
        finally:
            server.pool.paused = False
        for queue in server.pool.queues.values():
            server.pool.dispatch(queue)
        if recovered:
            logger.info('journal %s: %d tasks queued again, %d running ones run again, %d reported lost, '
                        '%d results kept', self.journal.path, counts['queued'], counts['retried'], counts['lost'],
                        counts['results'])

    def _recover(self, recovered: list[RecoveredTask], counts: collections.Counter) -> None:
        server = self.server
        for item in recovered:
            try:
                message = decode(item.header, (Submit,))
            except ColdocTasksProtocolError as exc:
                raise ColdocTasksJournalError(
                    f'the journal {self.journal.path} holds task {item.task_id}, whose submission this version '
                    f'cannot read ({exc}): it was written by another version; it was left untouched') from None
            retries = max(0, message.retry_on_loss - item.losses)
            if item.state is not None:
                task = Task(item.task_id, message.queue, message.cmd_name, b'', None)
                task.submitted, task.shared, task.served = item.submitted, item.shared, item.served
                server.table.add(task)
                server.table.finish(task, item.state, item.outcome, item.lost_message, finished=item.finished)
                counts['results'] += 1
                continue
            if item.running:
                if retries == 0:
                    task = Task(item.task_id, message.queue, message.cmd_name, b'', None)
                    task.submitted, task.shared = item.submitted, item.shared
                    server.table.add(task)
                    server.table.finish(task, LOST, lost_message=_lost_at_restart(item, message.retry_on_loss))
                    self.finished(task)
                    counts['lost'] += 1
                    continue
                retries -= 1
                self.journal.requeued(item.task_id)
                counts['retried'] += 1
            else:
                counts['queued'] += 1
            task = server._accept_task(message, item.call, None, submitted=item.submitted)
            task.retries, task.shared = retries, item.shared


def _lost_at_restart(item: RecoveredTask, retry_on_loss: int) -> str:
    if not retry_on_loss:
        return (f'task {item.task_id}: the task server stopped while the task ran; it did not ask to be run again '
                f'(retry_on_loss=0)')
    return (f'task {item.task_id}: the task server stopped while the task ran, after it had been run again '
            f'{item.losses} time{"s" if item.losses != 1 else ""}, as many as it asked (retry_on_loss={retry_on_loss})')
