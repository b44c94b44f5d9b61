"""A short tour of the coldoc task server.

Run it with ``python -m coldoc_tasks.demo`` (or ``make demo``).  It starts a
server of its own in a private temporary directory, runs a few tasks on it
that report their progress (drawn as bars: in place on a terminal, as plain
lines elsewhere), shows the remote traceback of a task that fails and the
server's status, then stops the server: always, also after Ctrl-C, SIGTERM
or an error.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator

from .coldoc.control import status
from .coldoc.daemon import tasks_daemon_start
from .coldoc.fork import bind_fork_class
from .coldoc.report import format_status
from .coldoc.stop import stop_server
from .demo_tasks import count_primes, parse_ages
from .exceptions import ColdocTasksException, ColdocTasksTimeoutError
from .terminal import LiveLines, progress_bar

#: Seconds between two drawings of the bars.
FRAME = 0.1
#: Seconds the whole demo may take before it gives up (it takes a few).
DEADLINE = 120.0
#: What ``count_primes`` is asked: slow enough to watch, quick enough to wait for.
LIMITS = (200_000, 50_000, 300_000, 100_000)
AGES = ('12', '37', '58', 'forty-two', '7')


class _Job:
    """A task of the demo and how to draw it."""

    def __init__(self, label: str, fork: object):
        self.label = label
        self.fork = fork
        self.outcome: object = None
        self.ended = False

    def line(self, coarse: bool) -> str:
        """The job's bar; ``coarse``: in quarters and without the message,
        so that plain output gets a line per quarter, not per report."""
        report = self.fork.progress()
        failed = isinstance(self.outcome, BaseException)
        if report is None and not self.ended:
            return f'  {self.label:<24} {"waiting for a free worker":>28}'
        done, total = (report.done, report.total) if report else (1, 1)
        fraction = done / total if total else 0.0
        if coarse and not self.ended:
            fraction = math.floor(fraction * 4) / 4
            done = fraction * (total or 0)
        if not self.ended:
            text = '' if coarse else report.message
        elif failed:
            text = f'failed: {type(self.outcome).__name__}'
        else:
            text = f'done: {self.outcome:,}' if isinstance(self.outcome, int) else 'done'
        return f'  {self.label:<24} {progress_bar(done, total)} {100 * fraction:3.0f}%  {text}'.rstrip()


@contextlib.contextmanager
def _interruptible() -> Iterator[dict]:
    """SIGTERM is Ctrl-C too; while ``state['defer']`` is true (a server is
    being started) both are only noted, and raised once it is false again."""
    state = {'defer': False, 'pending': False}

    def on_signal(signum: int, frame: object) -> None:
        if state['defer']:
            state['pending'] = True
        else:
            raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield state
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_tasks(infofile: str) -> int:
    fork_class = bind_fork_class(infofile)
    jobs = []
    for limit in LIMITS:
        f = fork_class()
        f.run(count_primes, limit)
        jobs.append(_Job(f'count_primes({limit:,})', f))
    bad = fork_class()
    bad.run(parse_ages, AGES)
    jobs.append(_Job('parse_ages(...)', bad))
    print(f'{len(jobs)} tasks submitted; the main process (pid {os.getpid()}) is free, the server runs them:')
    started = time.monotonic()
    bars = LiveLines(sys.stdout)
    coarse = not bars.terminal
    for job in jobs:
        while not job.ended:
            if time.monotonic() - started > DEADLINE:
                raise ColdocTasksTimeoutError(f'the tasks did not end within {DEADLINE:g} s')
            try:
                job.outcome = job.fork.wait(timeout=FRAME, raise_exception=False)
                job.ended = True
            except ColdocTasksTimeoutError:
                pass  # a frame has passed: draw again
            bars.draw([j.line(coarse) for j in jobs])
    print(f'all {len(jobs)} tasks ended in {time.monotonic() - started:.1f} s:')
    for limit, job in zip(LIMITS, jobs[:len(LIMITS)], strict=True):
        print(f'  there are {job.outcome:,} primes below {limit:,}')
    try:
        bad.wait()
    except ValueError as exc:
        print(f'  parse_ages failed, as it should: {exc!r}')
        print('the exception, re-raised here with the traceback from where the task ran:')
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)
        return 0
    print('parse_ages did not fail: something is wrong')
    return 1


def main() -> int:
    directory = tempfile.mkdtemp(prefix='coldoc-demo-')
    infofile = os.path.join(directory, 'info')
    pid = None
    with _interruptible() as signals:
        try:
            print(f'starting a coldoc task server in {directory} ...')
            signals['defer'] = True
            try:
                pid = tasks_daemon_start(infofile, os.path.join(directory, 'socket'),
                                         logfile=os.path.join(directory, 'log'), queues=['default:2:reuse'],
                                         stop_grace=1.0, timeout=30)
            finally:
                signals['defer'] = False
            if signals['pending']:
                raise KeyboardInterrupt
            print(f'coldoc task server started (pid {pid}); while it runs, watch it with\n'
                  f'  coldoc_tasks_cli coldoc status --watch {infofile}\n'
                  f'or in a browser, at the address that prints first:\n'
                  f'  coldoc_tasks_cli coldoc web {infofile}')
            code = _run_tasks(infofile)
            print(f"\nthe server's status (coldoc_tasks_cli coldoc status {infofile}):\n")
            print(format_status(status(infofile)))
            print()
            return code
        except KeyboardInterrupt:
            print('\ninterrupted')
            return 130
        except (ColdocTasksException, OSError) as exc:
            print(f'demo: {exc}', file=sys.stderr)
            return 1
        finally:
            signals['defer'] = True  # a second Ctrl-C must not leave the server running
            if _stop(infofile, pid):
                shutil.rmtree(directory, ignore_errors=True)


def _stop(infofile: str, pid: int | None) -> bool:
    """Stop the demo's server (if it started); True if none is left."""
    try:
        report = stop_server(infofile, grace=0, timeout=30)
    except (ColdocTasksException, OSError) as exc:
        print(f'demo: cannot stop the task server (pid {pid}) of {infofile}: {exc}', file=sys.stderr)
        return False
    if report.stopped:
        print(report)
    return True


if __name__ == '__main__':
    sys.exit(main())
