"""A short self-check of the fork-class contract against a live backend,
for ``coldoc_tasks_cli ... test``.  Each check prints one line; the number of
failures is returned (and is the command's exit status).

The checks test real conditions and raise :class:`SelfCheckFailure`, never
``assert``, so that they still check under ``python -O``."""

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
    SelfCheckFailure,
)


def _expect(condition: bool, message: str) -> None:
    """Raise :class:`SelfCheckFailure` with ``message`` unless ``condition``."""
    if not condition:
        raise SelfCheckFailure(message)


def echo(value):
    return value


def type_name(value):
    return type(value).__name__


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
        got = f.wait(timeout=30)
        _expect(got == {'answer': 42}, f"wrong value: {got!r} instead of {{'answer': 42}}")

    def exception():
        f = make_fork()
        f.run(raise_error, 'on purpose')
        try:
            f.wait(timeout=30)
        except SelfCheckError as exc:
            _expect(exc.args == ('on purpose',), f'wrong args: {exc.args!r}')
            _expect('raise_error' in ''.join(f.traceback or ()), 'the remote traceback lacks the task frame')
        else:
            raise SelfCheckFailure('the exception was not re-raised')

    def timeout_then_value():
        f = make_fork()
        f.run(sleep_then_return, 1.0, 'late')
        try:
            f.wait(timeout=0.1)
        except ColdocTasksTimeoutError:
            pass
        else:
            raise SelfCheckFailure('wait(timeout=0.1) returned before a task of 1 s finished')
        got = f.wait(timeout=30)
        _expect(got == 'late', f'wrong value after the timeout: {got!r}')

    def vanished():
        f = make_fork()
        f.run(exit_abruptly, 3)
        try:
            f.wait(timeout=30)
        except ColdocTasksProcessLookupError as exc:
            _expect('3' in str(exc), f'the exit code is not named: {exc}')
        else:
            raise SelfCheckFailure('a task that exited with code 3 raised no ColdocTasksProcessLookupError')

    def terminate():
        f = make_fork()
        f.run(sleep_then_return, 60, None)
        f.terminate()
        try:
            f.wait(timeout=30)
        except ColdocTasksProcessLookupError:
            pass
        else:
            raise SelfCheckFailure('a terminated task returned')

    def unpicklable_argument():
        f = make_fork()
        if not f.pickles_arguments:  # the call reaches cmd through fork() or in place
            f.run(type_name, threading.Lock())
            got = f.wait(timeout=30)
            _expect(got == 'lock', f"a lock argument arrived as {got!r}, not as a 'lock'")
            return
        try:
            f.run(type_name, threading.Lock())
        except ColdocTasksSerializationError:
            pass
        else:
            raise SelfCheckFailure('run() accepted an argument that cannot be pickled (a lock)')

    def nested_tasks():
        f = make_fork()
        f.run(nested, make_fork, 3)
        got = f.wait(timeout=60)
        _expect(got == 3, f'wrong depth: {got!r} instead of 3')

    def pickled_copy():
        f = make_fork()
        f.run(echo, 'shared')
        data = pickle.dumps(f)
        got = pickle.loads(data).wait(timeout=30)
        _expect(got == 'shared', f"the copy got {got!r} instead of 'shared'")

    def throughput():
        forks = [make_fork() for _ in range(100)]
        for i, f in enumerate(forks):
            f.run(echo, i)
        got = [f.wait(timeout=60) for f in forks]
        wrong = [i for i, value in enumerate(got) if value != i]
        if wrong:
            raise SelfCheckFailure(f'{len(wrong)} of 100 tasks returned a wrong value '
                                   f'(task {wrong[0]} returned {got[wrong[0]]!r})')

    for name, body in [('a value comes back', value), ('an exception is re-raised with its traceback', exception),
                       ('a timeout, then the value', timeout_then_value),
                       ('a vanished process is reported', vanished), ('terminate', terminate),
                       ('an unpicklable argument is refused or not pickled', unpicklable_argument),
                       ('nested tasks, depth 3', nested_tasks), ('a pickled fork object can wait', pickled_copy),
                       ('100 tasks in flight', throughput)]:
        check(name, body)
    out(f'{failures} failure(s)')
    return failures
