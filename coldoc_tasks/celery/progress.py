"""Progress on the ``celery`` backend: the task's state in the result backend.

Inside a task (a pool process, or the child of a waiting task that runs a
subtask), reports are coalesced by :class:`coldoc_tasks.progress.Reporter`
and stored as the task's state, :data:`PROGRESS_STATE`, whose meta is the
report as a dict (what Celery's ``update_state`` does, and what Flower
shows).  When the task ends its result replaces that state; so the last
report is also kept in a key of its own, ``coldoc-tasks-progress-<id>``
(on Redis, expiring with the results), for a ``progress()`` after the end.

Reading costs one round trip to the result backend while the task runs,
and one more, once, after it ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from celery import states

from ..progress import Progress, reporting
from .claims import claims_possible, results_expire_after

__all__ = ['PROGRESS_STATE', 'reporting_to_backend', 'read_progress']

logger = logging.getLogger(__name__)

#: The Celery state of a task that reported progress (its meta: the report).
PROGRESS_STATE = 'PROGRESS'
_LAST_PREFIX = 'coldoc-tasks-progress-'


@contextlib.contextmanager
def reporting_to_backend(backend: Any, task_id: str,
                         store: Callable[[dict], None] | None = None) -> Iterator[None]:
    """Within the block, the reports of the task ``task_id`` go to its state
    in ``backend`` (through ``store(meta)`` if given: a Celery task's
    ``update_state``); the last one is kept when the block ends normally."""
    if store is None:
        def store(meta: dict) -> None:
            backend.store_result(task_id, meta, PROGRESS_STATE)

    def send(report: Progress) -> None:
        # A task that ended (terminated: REVOKED) must not look running again.
        if backend.get_task_meta(task_id, cache=False).get('status') not in states.READY_STATES:
            store(report.as_dict())

    with reporting(send) as reporter:
        yield
    if reporter.latest is not None and claims_possible(backend):
        try:
            backend.client.set(_LAST_PREFIX + task_id, json.dumps(reporter.latest.as_dict()),
                               ex=results_expire_after(backend))
        except Exception:  # the result matters more than its last report
            logger.warning('task %s: cannot keep its last progress report', task_id, exc_info=True)


def read_progress(backend: Any, task_id: str) -> tuple[Progress | None, bool]:
    """The latest report of task ``task_id``, and whether the task has ended
    (then the report is its last one, and nothing new will come)."""
    meta = backend.get_task_meta(task_id, cache=False)
    status = meta.get('status')
    if status == PROGRESS_STATE:
        return Progress.from_dict(meta.get('result')), False
    if status not in states.READY_STATES:
        return None, False
    if not claims_possible(backend):
        return None, True
    data = backend.client.get(_LAST_PREFIX + task_id)
    if data is None:
        return None, True
    try:
        return Progress.from_dict(json.loads(data)), True
    except ValueError:
        return None, True
