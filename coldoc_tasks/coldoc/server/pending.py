"""The tasks of one queue that wait for a slot: higher priority first, and
first come, first served among equal priorities.

One FIFO per priority in use, and a heap of those priorities: a task goes
in and out in O(1) when every task has the same priority (the usual case,
which then costs what one FIFO costs), in O(log p) for p priorities in use.
A task cancelled while it waits stays in its FIFO until it reaches the
front, where the caller skips it (its state says so).
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ['PendingTasks']


class PendingTasks:
    """The waiting tasks of a queue, in the order they will start."""

    __slots__ = ('_levels', '_order')

    def __init__(self):
        self._levels: dict[int, collections.deque[Task]] = {}
        self._order: list[int] = []  # a heap of the negated priorities that have a FIFO

    def push(self, task: Task) -> None:
        """Add ``task`` behind the tasks of its priority."""
        level = self._levels.get(task.priority)
        if level is None:
            level = self._levels[task.priority] = collections.deque()
            heapq.heappush(self._order, -task.priority)
        level.append(task)

    def first(self) -> Task | None:
        """The task that starts next, or None; it stays in."""
        order = self._order
        while order:
            level = self._levels[-order[0]]
            if level:
                return level[0]
            del self._levels[-heapq.heappop(order)]
        return None

    def pop(self) -> Task:
        """Take out the task :meth:`first` returns (there must be one)."""
        self.first()
        return self._levels[-self._order[0]].popleft()

    def clear(self) -> None:
        """Forget every waiting task."""
        self._levels.clear()
        self._order.clear()

    def __bool__(self) -> bool:
        return self.first() is not None

    def __iter__(self) -> Iterator[Task]:
        """Every task, in the order they start (cancelled ones included)."""
        for priority in sorted(self._levels, reverse=True):
            yield from self._levels[priority]
