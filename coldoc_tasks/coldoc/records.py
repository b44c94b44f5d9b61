"""Tasks whose outcome the server keeps for anyone to read, by id, as often
as they like, until the result retention passes: the lower-level calls that
the Django Tasks backend is made of.

A fork object's ``wait`` *collects* an outcome (the server then forgets
it); here nothing does.  :func:`submit_kept` runs a call and returns its task
id; :func:`describe` returns what the server knows of the task now (its
state, times, worker, progress, and the outcome once there is one), from any
process of the machine; :func:`terminate` cancels it if it waits (queued or
deferred) or stops it if it runs.  A *record*, bytes of the submitter's
choosing (the Django backend keeps there what ``get_result`` needs: the
task's path, arguments, enqueue time), travels with the call and is kept
with the task, unread by the server::

    task_id = submit_kept(infofile, make_pdf, (42,), {}, priority=10, run_after=time.time() + 60)
    facts = describe(infofile, task_id)      # facts.state: 'deferred', 'queued', 'running', 'done', ...
    if facts.state in FINAL_STATES:
        value = facts.outcome().value

An id the server does not know (never submitted, or expired) raises
:class:`~coldoc_tasks.exceptions.ColdocTasksUnknownTaskError` saying which.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from typing import Any

from ..base import new_task_id
from ..outcome import Outcome, describe_callable, dumps_call, loads_outcome
from ..progress import Progress
from .fork import check_call, connect
from .infofile import PathLike
from .messages import Describe, Submit, Terminate
from .queues import DEFAULT_QUEUE
from .schedule import DEFAULT_PRIORITY, check_priority, run_after_timestamp

__all__ = ['FINAL_STATES', 'TaskFacts', 'submit_kept', 'describe', 'terminate']

#: The states of a task that has ended (``done``: it returned; ``failed``: it
#: raised; ``terminated``, ``cancelled``, ``lost``: it has no outcome).
FINAL_STATES = frozenset(('done', 'failed', 'terminated', 'cancelled', 'lost'))


@dataclasses.dataclass(frozen=True)
class TaskFacts:
    """What the server knows of a task.  Times are seconds since the epoch
    (``None``: not yet).  ``state``: ``deferred``, ``queued``, ``running``,
    or one of :data:`FINAL_STATES`; ``lost_message`` says why a final task
    has no outcome; ``record`` is what was submitted with it."""

    task_id: str
    state: str
    queue: str
    function: str
    priority: int
    run_after: float | None
    submitted: float
    started: float | None
    finished: float | None
    worker_pid: int | None
    lost_message: str | None
    progress: Progress | None
    record: bytes
    encoded_outcome: bytes | None

    def outcome(self) -> Outcome | None:
        """The task's outcome (its value, or its exception with the remote
        traceback), unpickled here; ``None`` if it has none (yet)."""
        return None if self.encoded_outcome is None else loads_outcome(self.encoded_outcome)


def submit_kept(infofile: PathLike | None, cmd: Callable, args: tuple = (), kwargs: dict | None = None, *,
                queue: str = DEFAULT_QUEUE, priority: int = DEFAULT_PRIORITY,
                run_after: float | datetime.datetime | None = None, record: bytes = b'',
                task_id: str | None = None, name: str | None = None, address: str | None = None,
                authkey: bytes | str | None = None) -> str:
    """Run ``cmd(*args, **kwargs)`` on the server of ``infofile`` and keep
    its outcome there for :func:`describe`; return the task id (``task_id``
    if given: it must be new to the server).  ``priority`` and ``run_after``
    as for :class:`~coldoc_tasks.coldoc.fork.ColdocFork`; ``record``: bytes
    kept with the task; ``name``: what ``status`` calls the task (default:
    the dotted name of ``cmd``).  Raises as ``run()`` does for a call that cannot be
    sent, and :class:`ColdocTasksUsageError` for a bad priority or time."""
    priority = check_priority(priority)
    when = run_after_timestamp(run_after)
    call = dumps_call(cmd, args, kwargs or {})
    cmd_name = name or describe_callable(cmd)
    connection = connect(None if infofile is None else str(infofile), address, authkey)
    check_call(connection, len(call) + len(record), queue, cmd_name)
    task_id = task_id or new_task_id()
    connection.send(Submit(task_id, queue, cmd_name, False, 0, priority, when, len(record)),
                    [call, record] if record else call)
    return task_id


def describe(infofile: PathLike | None, task_id: str, *, timeout: float = 30.0, address: str | None = None,
             authkey: bytes | str | None = None) -> TaskFacts:
    """What the server knows of ``task_id`` now; nothing is collected."""
    connection = connect(None if infofile is None else str(infofile), address, authkey)
    reply, body = connection.request(Describe, task_id, timeout=timeout)
    facts: dict[str, Any] = reply.value
    record_size = facts['record_size']
    progress = facts.get('progress')
    return TaskFacts(
        task_id=facts['id'], state=facts['state'], queue=facts['queue'], function=facts['function'],
        priority=facts['priority'], run_after=facts['run_after'], submitted=facts['submitted'],
        started=facts['started'], finished=facts['finished'], worker_pid=facts['worker_pid'],
        lost_message=facts['lost_message'],
        progress=None if progress is None else Progress(progress['done'], progress['total'], progress['message'],
                                                        progress['metadata']),
        record=bytes(body[:record_size]),
        encoded_outcome=None if facts['outcome_size'] is None else bytes(body[record_size:]))


def terminate(infofile: PathLike | None, task_id: str, *, timeout: float = 30.0, address: str | None = None,
              authkey: bytes | str | None = None) -> str:
    """Cancel ``task_id`` if it waits (queued or deferred), or stop it
    (SIGTERM, then SIGKILL after the grace) if it runs; return its state
    then (a task that has ended is left as it is)."""
    connection = connect(None if infofile is None else str(infofile), address, authkey)
    return connection.request(Terminate, task_id, timeout=timeout)[0].value
