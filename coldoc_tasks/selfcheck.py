"""A short self-check of the fork-class contract against a live backend,
for ``coldoc_tasks_cli ... test``.  Each check prints one line; the number of
failures is returned (and is the command's exit status)."""

from __future__ import annotations

import os
import pickle
import threading
import time
import traceback
from collections.abc import Callable

from .base import ForkBase
from .exceptions import (
    ColdocTasksProcessLookupError,
    ColdocTasksSerializationError,
    ColdocTasksTimeoutError,
    SelfCheckError,
)


def echo(value):
    return value


def raise_error(message):
    raise SelfCheckError(message)


def sleep_then_return(seconds, value):
    time.sleep(seconds)
    return value


def exit_abruptly(code):
    os._exit(code)


def nested(make_fork, depth):
    if depth <= 1:
        return 1
    f = make_fork()
    f.run(nested, make_fork, depth - 1)
    return f.wait(timeout=60) + 1


def _wait_for(data):
    return pickle.loads(data).wait(timeout=60)


def run_checks(make_fork: Callable[[], ForkBase], out: Callable[[str], None] = print) -> int:
    """Run every check with fork objects from ``make_fork``; return failures."""
    failures = 0

    def check(name: str, body: Callable[[], None]) -> None:
        nonlocal failures
        start = time.monotonic()
        try:
            body()
        except Exception as exc:
            failures += 1
            out(f'FAIL  {name}: {exc!r}')
            out(''.join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
        else:
            out(f'ok    {name} ({1000 * (time.monotonic() - start):.1f} ms)')

    def value():
        f = make_fork()
        f.run(echo, {'answer': 42})
        assert f.wait(timeout=30) == {'answer': 42}, 'wrong value'

    def exception():
        f = make_fork()
        f.run(raise_error, 'on purpose')
        try:
            f.wait(timeout=30)
        except SelfCheckError as exc:
            assert exc.args == ('on purpose',), f'wrong args {exc.args}'
            assert 'raise_error' in ''.join(f.traceback), 'the remote traceback lacks the task frame'
        else:
            raise AssertionError('the exception was not re-raised')

    def timeout_then_value():
        f = make_fork()
        f.run(sleep_then_return, 1.0, 'late')
        try:
            f.wait(timeout=0.1)
        except ColdocTasksTimeoutError:
            pass
        else:
            raise AssertionError('no timeout')
        assert f.wait(timeout=30) == 'late', 'wrong value after the timeout'

    def vanished():
        f = make_fork()
        f.run(exit_abruptly, 3)
        try:
            f.wait(timeout=30)
        except ColdocTasksProcessLookupError as exc:
            assert '3' in str(exc), f'the exit code is not named: {exc}'
        else:
            raise AssertionError('no ColdocTasksProcessLookupError')

    def terminate():
        f = make_fork()
        f.run(sleep_then_return, 60, None)
        f.terminate()
        try:
            f.wait(timeout=30)
        except ColdocTasksProcessLookupError:
            pass
        else:
            raise AssertionError('a terminated task returned')

    def unpicklable_argument():
        f = make_fork()
        try:
            f.run(echo, threading.Lock())
        except ColdocTasksSerializationError:
            pass
        else:
            f.wait(timeout=30)  # backends that fork need no pickling

    def nested_tasks():
        f = make_fork()
        f.run(nested, make_fork, 3)
        assert f.wait(timeout=60) == 3, 'wrong depth'

    def pickled_copy():
        f = make_fork()
        f.run(echo, 'shared')
        data = pickle.dumps(f)
        assert pickle.loads(data).wait(timeout=30) == 'shared'

    def throughput():
        forks = [make_fork() for _ in range(100)]
        for i, f in enumerate(forks):
            f.run(echo, i)
        assert [f.wait(timeout=60) for f in forks] == list(range(100))

    for name, body in [('a value comes back', value), ('an exception is re-raised with its traceback', exception),
                       ('a timeout, then the value', timeout_then_value),
                       ('a vanished process is reported', vanished), ('terminate', terminate),
                       ('an unpicklable argument is refused', unpicklable_argument),
                       ('nested tasks, depth 3', nested_tasks), ('a pickled fork object can wait', pickled_copy),
                       ('100 tasks in flight', throughput)]:
        check(name, body)
    out(f'{failures} failure(s)')
    return failures
