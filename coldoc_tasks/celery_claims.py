"""Claims: who runs a ``celery`` task, decided once, in Redis.

Before a task runs, somebody *claims* it with a Redis ``SET NX`` on the
result backend, under the key ``coldoc-tasks-claim-<task id>``, whose value
says who holds it:

=============================  ==============================================
claimed by                     when
=============================  ==============================================
the worker that received it    its pool process is about to run it
the task that waits for it     it waits with no timeout and nobody has it yet
``terminate()``                before any worker started it
=============================  ==============================================

Whoever loses does not run it.  A claim expires with the results
(``result_expires``).  Only a Redis result backend can hold claims: with any
other, :func:`claim` answers None and nobody can tell who runs what.
"""

from __future__ import annotations

import datetime
from typing import Any

try:
    from celery.backends.redis import RedisBackend
except ImportError:  # no redis client installed: no claims
    RedisBackend = None

__all__ = ['claim', 'claims_possible', 'results_expire_after']

_CLAIM_PREFIX = 'coldoc-tasks-claim-'


def claims_possible(backend: Any) -> bool:
    """True if ``backend`` (a Celery result backend) can hold claims."""
    return RedisBackend is not None and isinstance(backend, RedisBackend)


def results_expire_after(backend: Any) -> int:
    """Seconds after which the results of ``backend``'s app expire."""
    expires = backend.app.conf.result_expires
    if isinstance(expires, datetime.timedelta):
        expires = expires.total_seconds()
    return int(expires or 86400)


def claim(backend: Any, task_id: str, owner: str) -> bool | None:
    """Claim the right to run task ``task_id``: True if won, False if
    somebody else holds it, None if the result backend cannot make claims."""
    if not claims_possible(backend):
        return None
    return bool(backend.client.set(_CLAIM_PREFIX + task_id, owner, nx=True, ex=results_expire_after(backend)))
