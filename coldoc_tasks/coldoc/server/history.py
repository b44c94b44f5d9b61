"""The last tasks that ended, as ``status`` shows them: what finished, and
what failed with its error.

A task's entry is made when it reaches its final state, and outlives the
task itself, which leaves the table as soon as its outcome is collected.
An entry is a tuple of a few fields (and, for a failure, the error's type,
message and traceback as text, read from the outcome's readable part,
never unpickled): a successful task costs the server one small tuple, and
the memory held is bounded by the size of the two rings.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from ...outcome import read_error
from .tasks import DONE, FAILED

if TYPE_CHECKING:
    from .tasks import Task

__all__ = ['History', 'RECENT_KEPT']

#: How many ended tasks, and how many failures, ``status`` lists.
RECENT_KEPT = 20
#: The longest error message, and traceback, an entry keeps (characters).
ERROR_CHARS = 8000

_FIELDS = ('id', 'function', 'state', 'queue', 'submitted', 'started', 'finished', 'worker_pid', 'progress',
           'error')


class History:
    """Two rings: the last ``size`` tasks that ended, and the last ``size``
    that did not end well (failed, terminated, cancelled or lost)."""

    def __init__(self, size: int = RECENT_KEPT):
        self.ended: collections.deque[tuple] = collections.deque(maxlen=size)
        self.failures: collections.deque[tuple] = collections.deque(maxlen=size)

    def record(self, task: Task) -> None:
        """Remember ``task``, which has just reached its final state."""
        state = task.state
        if state == DONE:
            error = None
        elif state == FAILED:
            error = (read_error(task.outcome, ERROR_CHARS) if task.outcome is not None else None) or {
                'type': None, 'message': 'the outcome of the task cannot be read', 'traceback': ''}
        else:
            error = {'type': None, 'message': task.lost_message or state, 'traceback': ''}
        entry = (task.task_id, task.cmd_name, state, task.queue, task.submitted, task.started, task.finished,
                 task.worker_pid, task.progress, error)
        self.ended.append(entry)
        if error is not None:
            self.failures.append(entry)

    @staticmethod
    def _describe(entry: tuple) -> dict[str, Any]:
        described = dict(zip(_FIELDS, entry, strict=True))
        started, finished = described['started'], described['finished']
        described['runtime'] = None if started is None or finished is None else finished - started
        progress = described['progress']
        if progress is not None:
            described['progress'] = dict(zip(('done', 'total', 'message', 'metadata'), progress, strict=True))
        return described

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        """``recent_tasks`` and ``recent_failures`` of ``status``, the
        latest first."""
        return {'recent_tasks': [self._describe(entry) for entry in reversed(self.ended)],
                'recent_failures': [self._describe(entry) for entry in reversed(self.failures)]}
