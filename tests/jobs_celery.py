"""Task functions for the celery tests of nested waits (importable by the
workers, like tests/jobs.py)."""

from __future__ import annotations

import os
import time

from coldoc_tasks.exceptions import ColdocTasksTimeoutError
from tests import jobs


def nested_with_timeouts(make_fork, depth, timeout):
    """A chain ``depth`` deep whose every wait has ``timeout``; the list of depths that ran."""
    if depth <= 1:
        return [depth]
    f = make_fork()
    f.run(nested_with_timeouts, make_fork, depth - 1, timeout)
    return f.wait(timeout=timeout) + [depth]


def wait_past_the_deadline(make_fork, address, timeout):
    """Run a subtask that blocks at the test's rendezvous and wait for it
    with ``timeout``; return the seconds that wait took, this process's pid
    and the subtask's fork object (for the test to wait on)."""
    f = make_fork()
    f.run(jobs.rendezvous, address, 'inner value')
    start = time.monotonic()
    try:
        f.wait(timeout=timeout)
    except ColdocTasksTimeoutError:
        return time.monotonic() - start, os.getpid(), f
    raise AssertionError('the inner wait did not time out')


def wait_again_after_the_deadline(make_fork, address, timeout):
    """Like :func:`wait_past_the_deadline`, then tell the test (a second
    rendezvous) and wait again; return the seconds of the first wait and the value."""
    f = make_fork()
    f.run(jobs.rendezvous, address, 'inner value')
    start = time.monotonic()
    try:
        f.wait(timeout=timeout)
    except ColdocTasksTimeoutError:
        waited = time.monotonic() - start
    else:
        raise AssertionError('the inner wait did not time out')
    jobs.rendezvous(address)
    return waited, f.wait(timeout=60)


def terminate_a_subtask(make_fork, address):
    """Run a subtask that ignores SIGTERM and starts a grandchild, let the
    test see it (a rendezvous of our own once our wait timed out), terminate
    it, and return what a wait on it then says."""
    f = make_fork()
    f.run(jobs.rendezvous, address, 'never', ignore_sigterm=True, spawn_grandchild=True)
    try:
        f.wait(timeout=0.5)
    except ColdocTasksTimeoutError:
        pass
    jobs.rendezvous(address)
    f.terminate()
    try:
        return repr(f.wait(timeout=30))
    except Exception as exc:
        return f'{type(exc).__name__}: {exc}'


def wait_for_subtask(make_fork, timeout, cmd, *args):
    """Run ``cmd(*args)`` as a subtask and wait for it; return ``('value', v)``
    or the exception's type name and message."""
    f = make_fork()
    f.run(cmd, *args)
    try:
        return 'value', f.wait(timeout=timeout)
    except Exception as exc:
        return type(exc).__name__, str(exc)
