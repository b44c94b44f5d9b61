"""Tasks held by the server until their ``run_after`` time.

A heap of ``(run_after, sequence, task)`` and one timer of the event loop,
for the earliest: holding a task costs O(log n) and no timer of its own, so
that many thousands of deferred tasks cost one timer.  When the timer fires,
every task that is due goes to its queue (where its priority orders it) in
the order of their times.  ``run_after`` is a wall-clock time: a task is never
released before ``time.time()`` reaches it, even if the clock was set back
meanwhile (the timer is then armed again).

A deferred task cancelled by ``terminate`` is finished at once; its entry
stays in the heap until its time comes or until cancelled entries are most
of the heap, which is then rebuilt without them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterator

from .loop import EventLoop, Timer
from .tasks import CANCELLED, DEFERRED, QUEUED, Task, TaskTable

__all__ = ['DeferredTasks']

logger = logging.getLogger(__name__)

#: The heap is rebuilt when it holds more than this many cancelled entries, and more than live ones.
_REBUILD_FROM = 1024


class DeferredTasks:
    """The tasks waiting for their time.  ``release(task)`` is called, with
    the task back in the *queued* state, when its time has come;
    ``on_final(task)`` when one is cancelled."""

    def __init__(self, loop: EventLoop, table: TaskTable, release: Callable[[Task], None],
                 on_final: Callable[[Task], None]):
        self.loop = loop
        self.table = table
        self.release = release
        self.on_final = on_final
        self._heap: list[tuple[float, int, Task]] = []
        self._sequence = itertools.count()
        self._timer: Timer | None = None
        self._timer_when: float | None = None
        self.held = 0  # the tasks still deferred (the heap may hold cancelled ones too)

    def __len__(self) -> int:
        return self.held

    def hold(self, task: Task, run_after: float) -> None:
        """Keep ``task`` until ``run_after`` (seconds since the epoch)."""
        task.state = DEFERRED
        heapq.heappush(self._heap, (run_after, next(self._sequence), task))
        self.held += 1
        if self._timer_when is None or run_after < self._timer_when:
            self._arm()

    def cancel(self, task: Task, why: str) -> None:
        """Cancel a deferred task: it will never run."""
        self.held -= 1
        self.table.finish(task, CANCELLED, lost_message=f'task {task.task_id} was cancelled before it ran: {why}')
        logger.info('deferred task %s (%s) cancelled: %s', task.task_id, task.cmd_name, why)
        self.on_final(task)
        if len(self._heap) > _REBUILD_FROM and len(self._heap) > 2 * self.held:
            self._heap = [entry for entry in self._heap if entry[2].state == DEFERRED]
            heapq.heapify(self._heap)

    def put_aside(self) -> None:
        """Release nothing any more (the server stops, keeping the deferred
        tasks in its journal for the next start)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_when = None
        self._heap = []

    def tasks(self) -> Iterator[Task]:
        """The tasks still deferred, earliest first."""
        return (task for _, _, task in sorted(self._heap) if task.state == DEFERRED)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        heap = self._heap
        while heap and heap[0][2].state != DEFERRED:
            heapq.heappop(heap)
        if not heap:
            self._timer = self._timer_when = None
            return
        self._timer_when = heap[0][0]
        self._timer = self.loop.call_later(max(0.0, self._timer_when - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_when = None
        heap = self._heap
        now = time.time()
        while heap and heap[0][0] <= now:
            _, _, task = heapq.heappop(heap)
            if task.state == DEFERRED:
                self.held -= 1
                task.state = QUEUED
                logger.debug('task %s (%s): its time has come', task.task_id, task.cmd_name)
                self.release(task)
        self._arm()
