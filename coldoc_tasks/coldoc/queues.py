"""Queues as both ends of the protocol know them: their names, the rule for
names nobody declared, and :class:`QueueConfig`, how a queue runs its tasks."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

__all__ = ['DEFAULT_QUEUE', 'ANY_QUEUE', 'MODES', 'QueueConfig', 'undeclared_queue_message']

DEFAULT_QUEUE = 'default'
#: The name that declares the queue of every name not declared otherwise:
#: tasks on any such name are accepted, and all of them share its concurrency.
ANY_QUEUE = '*'
MODES = ('reuse', 'fresh')


@dataclasses.dataclass
class QueueConfig:
    """How a queue runs its tasks.

    ``concurrency``: how many of its tasks run at once (default: the number
    of CPUs).  ``mode``: ``'reuse'`` keeps workers for the next task,
    ``'fresh'`` runs each task in a new process (one is kept forked in
    advance, so the fork is not on the task's path).  ``max_tasks_per_worker``:
    in reuse mode, replace a worker after this many tasks (``None``: never).
    """

    name: str = DEFAULT_QUEUE
    concurrency: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    mode: str = 'reuse'
    max_tasks_per_worker: int | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in ':, \t\n\'"'):
            raise ValueError(f'a queue name must be a non-empty string without ":", "," or spaces: {self.name!r}')
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f'queue {self.name}: concurrency must be an integer >= 1, not {self.concurrency!r}')
        if self.mode not in MODES:
            raise ValueError(f'queue {self.name}: mode must be one of {", ".join(MODES)}, not {self.mode!r}')
        if self.max_tasks_per_worker is not None and (
                not isinstance(self.max_tasks_per_worker, int) or self.max_tasks_per_worker < 1):
            raise ValueError(f'queue {self.name}: max_tasks_per_worker must be an integer >= 1 or None, '
                             f'not {self.max_tasks_per_worker!r}')

    @classmethod
    def parse(cls, spec: str) -> QueueConfig:
        """Read ``NAME[:CONCURRENCY[:MODE[:MAX_TASKS_PER_WORKER]]]``, for
        example ``pdf:1:fresh`` or ``default:4:reuse:100``."""
        parts = spec.split(':')
        if len(parts) > 4:
            raise ValueError(f'a queue is NAME[:CONCURRENCY[:MODE[:MAX_TASKS_PER_WORKER]]], not {spec!r}')
        kwargs: dict[str, Any] = {'name': parts[0]}
        try:
            if len(parts) > 1 and parts[1]:
                kwargs['concurrency'] = int(parts[1])
            if len(parts) > 3 and parts[3]:
                kwargs['max_tasks_per_worker'] = int(parts[3])
        except ValueError:
            raise ValueError(f'queue {spec!r}: concurrency and max tasks per worker must be integers') from None
        if len(parts) > 2 and parts[2]:
            kwargs['mode'] = parts[2]
        return cls(**kwargs)


def undeclared_queue_message(name: str, declared: list[str]) -> str:
    """What a client is told about a task on a queue the server does not run."""
    return (f'the task server runs no queue {name!r} (its queues: {", ".join(declared)}); start it with '
            f'--queue {name}[:CONCURRENCY] to declare it, or with --queue "*:CONCURRENCY" to accept any name')
