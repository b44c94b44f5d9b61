"""A wait on the celery backend never hangs on a task that cannot finish: a
result that expired, or a worker killed under its task (real workers, see
fixtures_celery.py)."""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import IN_CI

importlib.import_module('celery') if IN_CI else pytest.importorskip('celery')  # CI must not skip

from coldoc_tasks import celery_tasks  # noqa: E402
from coldoc_tasks.exceptions import (  # noqa: E402
    ColdocTasksProcessLookupError,
    ColdocTasksTimeoutError,
    ColdocTasksUnknownTaskError,
)
from tests import jobs  # noqa: E402
from tests.fixtures_celery import remove_queue, running_worker  # noqa: E402
from tests.fixtures_coldoc import ROOT  # noqa: E402

#: Seconds between two looks at a task with no result, in these tests.
INTERVAL = 0.2


def wait_for(predicate, timeout: float, what: str) -> None:
    """Block until ``predicate()`` holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f'{what} did not happen within {timeout} s'
        time.sleep(0.05)


def test_a_wait_after_the_result_expired_says_so(tmp_path):
    with running_worker(tmp_path, 'redis', concurrency=1, result_expires=1) as worker:
        backend = celery_tasks.app_for(worker.celeryconfig).backend
        f = worker.fork_class()
        f.liveness_interval = INTERVAL
        f.run(jobs.add, 1, 2)
        key = backend.get_key_for_task(f.task_id)
        wait_for(lambda: backend.client.exists(key), 30, 'the result being stored')
        wait_for(lambda: not backend.client.exists(key), 30, 'the result expiring')
        start = time.monotonic()
        with pytest.raises(ColdocTasksUnknownTaskError, match='result expired') as info:
            f.wait(timeout=30)
        assert time.monotonic() - start < 5
        assert f.task_id in str(info.value) and 'result_expires is 1 s' in str(info.value)


def test_a_task_still_in_its_queue_is_not_unknown(celery_redis_worker):
    f = celery_redis_worker.fork_class(queue=celery_redis_worker.queue + '-nobody-listens')
    f.liveness_interval = INTERVAL
    f.run(jobs.add, 1)
    try:
        with pytest.raises(ColdocTasksTimeoutError):
            f.wait(timeout=1.0)  # looked at its records several times meanwhile
    finally:
        f.terminate()
        remove_queue(celery_tasks.app_for(celery_redis_worker.celeryconfig), f.queue)


QUEUED_ELSEWHERE = """
import pickle, sys
from coldoc_tasks.exceptions import ColdocTasksTimeoutError
f = pickle.loads(bytes.fromhex(sys.argv[1]))
f.liveness_interval = 0.2
try:
    f.wait(timeout=1.0)
except ColdocTasksTimeoutError:
    print('still queued')
"""


def test_a_pickled_fork_object_of_a_queued_task_is_not_unknown_elsewhere(celery_redis_worker):
    # no record in Redis says it was sent: the time of sending travels with the object
    f = celery_redis_worker.fork_class(queue=celery_redis_worker.queue + '-nobody-listens')
    f.run(jobs.add, 1)
    try:
        out = subprocess.run([sys.executable, '-c', QUEUED_ELSEWHERE, pickle.dumps(f).hex()], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == 'still queued', out.stderr
    finally:
        f.terminate()
        remove_queue(celery_tasks.app_for(celery_redis_worker.celeryconfig), f.queue)


def test_killing_the_workers_main_process_under_a_task_is_reported(tmp_path, rendezvous):
    with running_worker(tmp_path, 'redis', concurrency=1) as worker:
        f = worker.fork_class()
        f.liveness_interval = INTERVAL
        f.run(jobs.rendezvous, rendezvous.address, 'never')
        conn, (pid,) = rendezvous.accept()
        os.kill(worker.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(ColdocTasksProcessLookupError, match='is gone') as info:
            f.wait(timeout=60)
        assert time.monotonic() - start < 10
        assert f'process {pid}' in str(info.value)
