"""The server's table of tasks: their states, results and waiters.

A task is *queued* (or first *deferred*, held until its ``run_after``
time), then *running*, then one of the final states: *done*
(it returned), *failed* (it raised), *terminated* (by ``terminate``),
*cancelled* (terminated or stopped before it ran) or *lost* (its worker
vanished).  A final task keeps its outcome until a ``wait`` collects it or
the retention time passes (then it is *expired*: dropped and counted).

Memory: after a burst the table gives back what the burst took.  A collected
task leaves nothing but 16 bytes in the ring of remembered ids; the expiry
queue is cleared of collected tasks as it goes; and :meth:`TaskTable.compact`
rebuilds the task dict, which never shrinks by itself, once it has emptied.
"""

from __future__ import annotations

import array
import collections
import time
from collections.abc import Callable
from typing import Any

DEFERRED = 'deferred'
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
#: The task dict is rebuilt when it holds a quarter of its peak, from this peak up.
COMPACT_FROM = 1024
_COLLECTED_BY_UNKNOWN = 0
_EXPIRED = -1


#: Who got a final task's outcome (bits of :attr:`Task.served`).
SERVED_SUBMITTER = 1
SERVED_COPY = 2

class Task:
    """One task as the server knows it.  ``call`` (the pickled call, opaque here) is
    dropped once a worker has it; ``outcome`` is the encoded outcome of a
    task that ran to its end, ``lost_message`` says why a task has none.
    ``record``: bytes the submitter asked the server to keep with the task
    and show to ``describe`` (opaque here too)."""

    __slots__ = ('task_id', 'queue', 'cmd_name', 'call', 'state', 'submitted', 'started', 'finished',
                 'worker_pid', 'outcome', 'lost_message', 'waiters', 'owner_pid', 'terminating', 'subscriber',
                 'shared', 'served', 'progress', 'retries', 'priority', 'run_after', 'record')

    def __init__(self, task_id: str, queue: str, cmd_name: str, call: bytes | memoryview, owner_pid: int | None,
                 priority: int = 0, run_after: float | None = None, record: bytes = b''):
        self.task_id = task_id
        self.queue = queue
        self.cmd_name = cmd_name
        self.call: bytes | memoryview | None = call
        self.priority = priority
        self.run_after = run_after
        self.record = record
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
        self.served = 0  # who got the outcome: SERVED_SUBMITTER, SERVED_COPY
        # the latest progress report, (done, total, message, metadata), if any
        self.progress: tuple | None = None
        # how many more times it runs again if its worker is lost (retry_on_loss)
        self.retries = 0

    def describe(self, now: float) -> dict[str, Any]:
        """The task as ``status`` shows it."""
        started = self.started
        return {
            'id': self.task_id, 'function': self.cmd_name, 'state': self.state, 'queue': self.queue,
            'submitted': self.submitted, 'started': started,
            'runtime': None if started is None else (self.finished or now) - started,
            'worker_pid': self.worker_pid, 'terminating': self.terminating, 'priority': self.priority,
            'run_after': self.run_after,
            'progress': None if self.progress is None else dict(zip(('done', 'total', 'message', 'metadata'),
                                                                    self.progress, strict=True)),
        }


class TaskTable:
    """Every task the server knows, the counters of what became of them, and
    the expiry of uncollected results."""

    def __init__(self, retention: float):
        self.retention = retention
        #: the last tasks that ended (set by the server: see .history)
        self.history: Any = None
        self.tasks: dict[str, Task] = {}
        self.counters = collections.Counter({state: 0 for state in (
            'submitted', DONE, FAILED, TERMINATED, CANCELLED, LOST, 'collected', 'expired')})
        # Final tasks in the order they finished, which is also the order
        # they expire in, since the retention time is the same for all.
        self._expiry: collections.deque[tuple[float, str]] = collections.deque()
        # what became of the tasks no longer in ``tasks``
        self.forgotten = RememberedIds(REMEMBERED_IDS)
        self._peak = 0  # the most tasks held since the last compaction
        #: called with the id of each task dropped (collected or expired): the journal records it
        self.on_drop: Callable[[str], None] | None = None

    def add(self, task: Task) -> None:
        tasks = self.tasks
        tasks[task.task_id] = task
        self.counters['submitted'] += 1
        if len(tasks) > self._peak:
            self._peak = len(tasks)

    def finish(self, task: Task, state: str, outcome: bytes | None = None, lost_message: str | None = None,
               finished: float | None = None) -> None:
        """Move ``task`` to a final state (``finished``: when, if not now: a
        result read back from the journal keeps its retention)."""
        task.state = state
        task.outcome = outcome
        task.lost_message = lost_message
        task.call = None
        now = time.time()
        task.finished = now if finished is None else finished
        self.counters[state] += 1
        if self.history is not None:
            self.history.record(task)
        self._expiry.append((time.monotonic() + self.retention - (now - task.finished), task.task_id))

    def collect(self, task: Task, by_pid: int | None) -> None:
        """Forget ``task``: its outcome was delivered."""
        self._drop(task, _COLLECTED_BY_UNKNOWN if by_pid is None else by_pid)
        self.counters['collected'] += 1
        expiry = self._expiry
        # Most results are collected long before they would expire: their
        # entries go here, in O(1) amortized, else a busy server would hold
        # one per task of the whole retention time.
        if len(expiry) > 2 * len(self.tasks) + COMPACT_FROM:
            self._forget_collected()

    def _forget_collected(self) -> None:
        tasks = self.tasks
        self._expiry = collections.deque(entry for entry in self._expiry if entry[1] in tasks)

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
                self._drop(task, _EXPIRED)
                self.counters['expired'] += 1
        return None

    def _drop(self, task: Task, why: int) -> None:
        self.tasks.pop(task.task_id, None)
        self.forgotten.add(task.task_id, why)
        if self.on_drop is not None:
            self.on_drop(task.task_id)

    def why_unknown(self, task_id: str) -> str:
        why = self.forgotten.get(task_id)
        if why is None:
            text = 'it was never submitted to this server'
        elif why == _EXPIRED:
            text = f'its result expired after {self.retention:g} s without being collected'
        else:
            text = f'its result was already collected{f" by process {why}" if why > 0 else ""}'
        return f'task {task_id} is not known to the server: {text}'

    def compact(self) -> bool:
        """Rebuild the task dict if it holds at most a quarter of its peak
        (a dict keeps the size of its peak, however many items go): True if
        it did, so that the caller may give freed memory back.  And clear the
        expiry queue of collected tasks whenever they are most of it: their
        last objects, spread over the memory of a burst, would keep it all."""
        tasks = self.tasks
        shrunk = self._peak >= COMPACT_FROM and len(tasks) <= self._peak // 4
        if shrunk:
            self.tasks = {task_id: task for task_id, task in tasks.items()}
            self._peak = len(tasks)
        if shrunk or len(self._expiry) > 2 * len(tasks) + 64:
            self._forget_collected()
        return shrunk


class RememberedIds:
    """The last ``size`` task ids dropped from the table, each with an int
    saying why, in 16 bytes each: a 64-bit hash of the id (two ids of the
    same hash, about one chance in 10**14 among 100,000, would share a
    message) and the int.  Looked up only for a task the table does not
    know, by a scan in C."""

    def __init__(self, size: int):
        self.size = size
        self._hashes = array.array('q')
        self._whys = array.array('q')
        self._next = 0

    def add(self, task_id: str, why: int) -> None:
        if len(self._hashes) < self.size:
            self._hashes.append(hash(task_id))
            self._whys.append(why)
            return
        self._hashes[self._next] = hash(task_id)
        self._whys[self._next] = why
        self._next = (self._next + 1) % self.size

    def get(self, task_id: str) -> int | None:
        try:
            return self._whys[self._hashes.index(hash(task_id))]
        except ValueError:
            return None

    def __len__(self) -> int:
        return len(self._hashes)
