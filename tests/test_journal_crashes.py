"""A server with a journal killed (SIGKILL) at random moments, 20 times, and
started again, while a client submits and collects without a pause: no task
is lost or runs twice, unless it asked to be run again, and every outcome
reaches its waiter."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from coldoc_tasks.coldoc_tasks import bind_fork_class
from coldoc_tasks.exceptions import ColdocTasksConnectionError, ColdocTasksProcessLookupError
from tests import jobs
from tests.helpers_journal import JournalServer

CRASHES = 20
#: the test's bound: every wait and the whole run stay within it
BOUND = 240.0


@pytest.mark.timeout(BOUND + 60)
def test_random_crashes_lose_nothing(tmp_path):
    server = JournalServer(queues=('default:2:reuse',))
    server.start()
    runs = str(tmp_path)
    F = bind_fork_class(server.infofile)
    rng = random.Random(os.environ.get('COLDOC_TASKS_CRASH_SEED', time.time_ns()))
    stop = threading.Event()
    results: dict[str, tuple] = {}  # name -> (retry_on_loss, what wait returned or raised)
    problems: list[str] = []
    deadline = time.monotonic() + BOUND

    def client(number: int) -> None:
        pending: list[tuple[str, int, object]] = []
        count = 0
        while not stop.is_set() or pending:
            if not stop.is_set() and len(pending) < 8:
                name, retry = f'c{number}-{count}', rng.choice((0, 1))
                f = F()
                try:
                    f.run(jobs.record_run, runs, name, name, retry_on_loss=retry)
                except ColdocTasksConnectionError:
                    time.sleep(0.01)  # the server is down: not submitted, try again
                    continue
                count += 1
                pending.append((name, retry, f))
                continue
            name, retry, f = pending.pop(0)
            try:
                results[name] = (retry, f.wait(timeout=max(1.0, deadline - time.monotonic())))
            except ColdocTasksProcessLookupError as exc:
                results[name] = (retry, exc)
            except Exception as exc:  # noqa: BLE001 - every other end is a failure of the test
                problems.append(f'{name}: {type(exc).__name__}: {exc}')

    clients = [threading.Thread(target=client, args=(n,)) for n in range(2)]
    for thread in clients:
        thread.start()
    try:
        for _ in range(CRASHES):
            time.sleep(rng.uniform(0.05, 0.6))  # a random moment, not a wait for a condition
            server.kill()
            server.start()
        stop.set()
        for thread in clients:
            thread.join(max(1.0, deadline - time.monotonic()))
            assert not thread.is_alive(), 'a client did not finish within the bound'
    finally:
        stop.set()
        server.remove()

    lost_silently, duplicated, reported_lost, retried_twice = [], [], [], 0
    for name, (retry, outcome) in results.items():
        ran = server.runs(runs, name)
        if isinstance(outcome, ColdocTasksProcessLookupError):
            # only a task running when the server died, that asked for no retry or had its retries
            # (two crashes in a row may each find it sent to a worker that had not begun it yet)
            said = 'did not ask to be run again' if retry == 0 else 'as many as it asked'
            if ran > 1 + retry or 'stopped while the task ran' not in str(outcome) or said not in str(outcome):
                lost_silently.append(f'{name} (retry {retry}, ran {ran}): {outcome}')
            reported_lost.append(name)
        elif outcome != name or ran == 0:
            lost_silently.append(f'{name}: {outcome!r}, ran {ran}')
        elif ran > 1 + retry:
            duplicated.append(f'{name} ran {ran} times (retry_on_loss={retry})')
        else:
            retried_twice += ran == 2
    print(f'\ncrash test: {len(results)} tasks, {CRASHES} crashes, {len(reported_lost)} reported lost as they asked '
          f'(running at a crash, with no retry left), {retried_twice} run again as they asked, '
          f'{len(lost_silently)} lost, {len(duplicated)} duplicated')
    assert not problems, problems[:10]
    assert not lost_silently, lost_silently[:10]
    assert not duplicated, duplicated[:10]
    assert len(results) > CRASHES
