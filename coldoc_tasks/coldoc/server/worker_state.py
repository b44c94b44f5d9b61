"""What the server knows of one worker process (:class:`Worker`), and how
``status`` shows it.  The pool that forks, feeds and replaces workers is in
:mod:`.workers`; the body of a worker in :mod:`.worker_process`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .channel import Channel
from .memory import resident_bytes

if TYPE_CHECKING:
    from .slots import Queue
    from .tasks import Task

__all__ = ['Worker']


class Worker:
    """A worker process: its pid, its socket, its pidfd, and its task."""

    __slots__ = ('pid', 'channel', 'pidfd', 'queue', 'task', 'tasks_done', 'retiring', 'kill_timer', 'fault',
                 'born', 'idle_since')

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
        self.born = time.time()
        self.idle_since = 0.0  # time.monotonic() when it was last parked

    def describe(self, now: float) -> dict[str, Any]:
        """The worker as ``status`` shows it (its resident size read now,
        from /proc: None if it cannot be read)."""
        task = self.task
        return {'pid': self.pid, 'queue': self.queue.config.name, 'started': self.born, 'age': now - self.born,
                'tasks_done': self.tasks_done, 'rss': resident_bytes(self.pid),
                'task': None if task is None else task.task_id,
                'function': None if task is None else task.cmd_name,
                'state': 'busy' if task is not None else 'leaving' if self.retiring else 'idle'}
