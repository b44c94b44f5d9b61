"""The server's table of tasks: their states, results and waiters.

A task is *queued*, then *running*, then one of the final states: *done*
(it returned), *failed* (it raised), *terminated* (by ``terminate``),
*cancelled* (terminated or stopped before it ran) or *lost* (its worker
vanished).  A final task keeps its outcome until a ``wait`` collects it or
the retention time passes (then it is *expired*: dropped and counted).
"""

from __future__ import annotations

import collections
import time
from typing import Any

QUEUED = 'queued'
RUNNING = 'running'
DONE = 'done'
FAILED = 'failed'
TERMINATED = 'terminated'
CANCELLED = 'cancelled'
LOST = 'lost'
FINAL_STATES = frozenset((DONE, FAILED, TERMINATED, CANCELLED, LOST))

#: How many collected or expired task ids are remembered, to say so to a late wait.
REMEMBERED_IDS = 100_000


class Task:
    """One task as the server knows it.  ``call`` (the pickled call, opaque here) is
    dropped once a worker has it; ``outcome`` is the encoded outcome of a
    task that ran to its end, ``lost_message`` says why a task has none."""

    __slots__ = ('task_id', 'queue', 'cmd_name', 'call', 'state', 'submitted', 'started', 'finished',
                 'worker_pid', 'outcome', 'lost_message', 'waiters', 'owner_pid', 'terminating', 'subscriber',
                 'shared', 'progress')

    def __init__(self, task_id: str, queue: str, cmd_name: str, call: bytes, owner_pid: int | None):
        self.task_id = task_id
        self.queue = queue
        self.cmd_name = cmd_name
        self.call: bytes | None = call
        self.state = QUEUED
        self.submitted = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.worker_pid: int | None = None
        self.outcome: bytes | None = None
        self.lost_message: str | None = None
        # (connection, rid, lent_queue or None) for each client blocked in wait()
        self.waiters: list[tuple[Any, int, Any]] = []
        self.owner_pid = owner_pid
        self.terminating = False
        # the connection the outcome is pushed to when the task ends, if any
        self.subscriber: Any = None
        # a fork object of the task was pickled: keep the outcome after the
        # push, for a wait from another process
        self.shared = False
        # the latest progress report, (done, total, message, metadata), if any
        self.progress: tuple | None = None

    def describe(self, now: float) -> dict[str, Any]:
        """The task as ``status`` shows it."""
        started = self.started
        return {
            'id': self.task_id, 'function': self.cmd_name, 'state': self.state, 'queue': self.queue,
            'submitted': self.submitted, 'started': started,
            'runtime': None if started is None else (self.finished or now) - started,
            'worker_pid': self.worker_pid,
            'progress': None if self.progress is None else dict(zip(('done', 'total', 'message', 'metadata'),
                                                                    self.progress, strict=True)),
        }


class TaskTable:
    """Every task the server knows, the counters of what became of them, and
    the expiry of uncollected results."""

    def __init__(self, retention: float):
        self.retention = retention
        self.tasks: dict[str, Task] = {}
        self.counters = collections.Counter({state: 0 for state in (
            'submitted', DONE, FAILED, TERMINATED, CANCELLED, LOST, 'collected', 'expired')})
        # Final tasks in the order they finished, which is also the order
        # they expire in, since the retention time is the same for all.
        self._expiry: collections.deque[tuple[float, str]] = collections.deque()
        # task id -> what became of it, for tasks no longer in ``tasks``
        self.forgotten: collections.OrderedDict[str, str] = collections.OrderedDict()

    def add(self, task: Task) -> None:
        self.tasks[task.task_id] = task
        self.counters['submitted'] += 1

    def finish(self, task: Task, state: str, outcome: bytes | None = None, lost_message: str | None = None) -> None:
        """Move ``task`` to a final state."""
        task.state = state
        task.outcome = outcome
        task.lost_message = lost_message
        task.call = None
        task.finished = time.time()
        self.counters[state] += 1
        self._expiry.append((time.monotonic() + self.retention, task.task_id))

    def collect(self, task: Task, by_pid: int | None) -> None:
        """Forget ``task``: its outcome was delivered."""
        self._drop(task, f'its result was already collected{"" if by_pid is None else f" by process {by_pid}"}')
        self.counters['collected'] += 1

    def expire(self, now: float) -> float | None:
        """Drop the results whose retention has passed; return when the next
        one will, or ``None``."""
        expiry = self._expiry
        while expiry:
            when, task_id = expiry[0]
            if when > now:
                return when
            expiry.popleft()
            task = self.tasks.get(task_id)
            if task is not None and task.state in FINAL_STATES and not task.waiters:
                self._drop(task, f'its result expired after {self.retention:g} s without being collected')
                self.counters['expired'] += 1
        return None

    def _drop(self, task: Task, why: str) -> None:
        self.tasks.pop(task.task_id, None)
        forgotten = self.forgotten
        forgotten[task.task_id] = why
        if len(forgotten) > REMEMBERED_IDS:
            forgotten.popitem(last=False)

    def why_unknown(self, task_id: str) -> str:
        why = self.forgotten.get(task_id)
        return f'task {task_id} is not known to the server: ' + (why or 'it was never submitted to this server')
