"""The records the ``celery`` backend keeps in Redis, next to Celery's results.

One key per task, on the result backend, expiring with the results
(``result_expires``):

===================================  =========================  ===============================
key                                  written by, when           value
===================================  =========================  ===============================
``coldoc-tasks-claim-<id>``          whoever runs the task, or  ``v1 ROLE HOST PID START NODE``
                                     ``terminate()``, first
===================================  =========================  ===============================

*The claim* (a ``SET NX``) decides, once and for all, who runs a task: the
worker that received it (ROLE ``worker``), the task that waits for it and runs
it in a child process of its own (``waiter``: see :mod:`.celery_waiter`; the
claim then names that child), or ``terminate()`` when it comes first
(``terminated``).  Whoever loses does not run it.  HOST is the host name
of the process that holds it, PID its pid, START its start time (clock ticks
since boot, from ``/proc``, or ``-``), NODE the Celery worker's name (or ``-``);
together they tell a waiter whether that process still exists.

A task with no result and no claim is queued if it was sent less than
``result_expires`` ago (the fork object knows when); earlier versions wrote a
*submitted* marker, ``coldoc-tasks-submitted-<id>``, for that, at every
``run()``: one more round trip to Redis per task.  It is still read, for
fork objects of those versions.

Only a Redis result backend holds these records: with any other,
:func:`claim` answers None and :func:`records` None, and nobody can tell who
runs what.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
import time
from typing import Any

try:
    from celery.backends.redis import RedisBackend
except ImportError:  # no redis client installed: no claims
    RedisBackend = None

__all__ = ['Claim', 'claim', 'claims_possible', 'reclaim', 'records', 'results_expire_after', 'sent_recently']

_CLAIM_PREFIX = 'coldoc-tasks-claim-'
_SUBMITTED_PREFIX = 'coldoc-tasks-submitted-'
_VERSION = 'v1'
# [pid, host name, start time] of this process, once known
_this_process: list = [None, '', '-']


@dataclasses.dataclass(frozen=True)
class Claim:
    """Who holds the claim of a task (see the table above)."""

    role: str
    host: str = '-'
    pid: int | None = None
    start: str = '-'
    node: str = '-'

    @classmethod
    def here(cls, role: str, node: str | None = None) -> Claim:
        """A claim by this process."""
        pid = os.getpid()
        if _this_process[0] != pid:  # read once per process, not per task
            _this_process[:] = [pid, socket.gethostname(), _start_time(pid) or '-']
        return cls(role, _this_process[1], pid, _this_process[2], node or '-')

    @classmethod
    def of_child(cls, role: str, pid: int) -> Claim:
        """A claim by process ``pid``, a child of this process (so not yet reaped)."""
        return cls(role, socket.gethostname(), pid, _start_time(pid) or '-')

    def encode(self) -> str:
        return ' '.join([_VERSION, self.role, self.host, str(self.pid or '-'), self.start, self.node])

    @classmethod
    def decode(cls, value: bytes | str) -> Claim:
        text = value.decode(errors='replace') if isinstance(value, bytes) else value
        fields = text.split(' ')
        if len(fields) != 6 or fields[0] != _VERSION:
            return cls('unknown', node=text)  # an older or foreign claim: nothing to check
        _, role, host, pid, start, node = fields
        return cls(role, host, int(pid) if pid.isdigit() else None, start, node)

    def describe(self) -> str:
        where = f'process {self.pid} on {self.host}' if self.pid else f'a process on {self.host}'
        return where + (f' (Celery worker {self.node})' if self.node != '-' else '')

    def same_process_here(self) -> bool:
        """True if the claiming process runs on this host and is alive
        (with the same start time, so its pid was not reused)."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        start = _start_time(self.pid)
        return start is not None and (self.start == '-' or start == self.start)

    def process_gone(self) -> bool:
        """True if the claiming process is known to be gone: it ran on this
        host and its pid is free, a zombie, or another process's.  False when
        it lives, or when that cannot be told (another host)."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        start = _start_time(self.pid)
        if start is None:
            return True
        return self.start != '-' and start != self.start


def _start_time(pid: int) -> str | None:
    """The start time of live process ``pid`` ('-' if unknown), or None if
    it is gone or a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as stream:
            fields = stream.read().rpartition(')')[2].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return '-'
    if fields[0] in ('Z', 'X'):
        return None
    return fields[19]


def claims_possible(backend: Any) -> bool:
    """True if ``backend`` (a Celery result backend) can hold claims."""
    return RedisBackend is not None and isinstance(backend, RedisBackend)


def results_expire_after(backend: Any) -> int:
    """Seconds after which the results of ``backend``'s app expire."""
    expires = backend.app.conf.result_expires
    if isinstance(expires, datetime.timedelta):
        expires = expires.total_seconds()
    return int(expires or 86400)


def claim(backend: Any, task_id: str, owner: Claim) -> bool | None:
    """Claim the right to run task ``task_id``: True if won, False if
    somebody else holds it, None if the result backend cannot make claims."""
    if not claims_possible(backend):
        return None
    return bool(backend.client.set(_CLAIM_PREFIX + task_id, owner.encode(), nx=True,
                                   ex=results_expire_after(backend)))


def reclaim(backend: Any, task_id: str, owner: Claim) -> None:
    """Hand the claim of task ``task_id``, already held, to ``owner``."""
    if claims_possible(backend):
        backend.client.set(_CLAIM_PREFIX + task_id, owner.encode(), xx=True, ex=results_expire_after(backend))


def sent_recently(backend: Any, sent_at: float | None) -> bool:
    """Whether a task sent at ``sent_at`` (``time.time()``; None: unknown)
    is within ``result_expires`` of its sending: with no result and no claim,
    it is then still queued, since a task that ran keeps its claim as long
    as its result."""
    return sent_at is not None and time.time() - sent_at < results_expire_after(backend)


def records(backend: Any, task_id: str) -> tuple[bool, Claim | None] | None:
    """``(submitted, claim)`` of task ``task_id``, or None without Redis."""
    if not claims_possible(backend):
        return None
    submitted, owner = backend.client.mget([_SUBMITTED_PREFIX + task_id, _CLAIM_PREFIX + task_id])
    return submitted is not None, None if owner is None else Claim.decode(owner)
