"""What the celery backend promises beyond the contract suite, on real
workers (see fixtures_celery.py)."""

from __future__ import annotations

import importlib
import pickle
import sys
import time

import pytest

from tests.conftest import IN_CI  # noqa: I001

celery = importlib.import_module('celery') if IN_CI else pytest.importorskip('celery')  # CI must not skip

from coldoc_tasks import celery_tasks  # noqa: E402
from coldoc_tasks.celery_tasks import CeleryFork, fork_class_for, get_fork_class  # noqa: E402
from coldoc_tasks.exceptions import (  # noqa: E402
    ColdocTasksBackendUnavailableError,
    ColdocTasksConnectionError,
    ColdocTasksProcessLookupError,
    ColdocTasksSerializationError,
    ColdocTasksTimeoutError,
    ColdocTasksUsageError,
)
from tests import jobs  # noqa: E402
from tests.fixtures_celery import running_worker, write_celeryconfig  # noqa: E402


def touch(path):
    """A task with a visible side effect."""
    with open(path, 'w') as stream:
        stream.write('ran')
    return path


@pytest.fixture(scope='module')
def single_slot_worker(tmp_path_factory):
    """A worker with one pool process, for what must not need a second."""
    with running_worker(tmp_path_factory.mktemp('celery-single'), 'redis', concurrency=1) as worker:
        yield worker


def test_timeout_is_also_celerys_timeout_error(celery_worker, rendezvous):
    f = celery_worker.fork_class()
    f.run(jobs.rendezvous, rendezvous.address, 'v')
    conn, _ = rendezvous.accept()
    start = time.monotonic()
    with pytest.raises(celery.exceptions.TimeoutError) as info:
        f.wait(timeout=0.2)
    assert 0.15 <= time.monotonic() - start < 0.7  # not rounded up to Celery's one-second steps
    assert isinstance(info.value, ColdocTasksTimeoutError) and isinstance(info.value, TimeoutError)
    rendezvous.release(conn)
    assert f.wait(timeout=30) == 'v'


def test_task_id_is_celerys_id(celery_worker):
    f = celery_worker.fork_class()
    f.run(jobs.add, 1, 1)
    assert f.wait(timeout=30) == 2
    result = celery_tasks.app_for(celery_worker.celeryconfig).AsyncResult(f.task_id)
    assert result.state == 'SUCCESS'


def test_terminate_a_queued_task_and_it_never_runs(celery_redis_worker, rendezvous, tmp_path):
    fork_class = celery_redis_worker.fork_class
    blockers = [fork_class() for _ in range(2)]  # as many as the worker's pool processes
    for f in blockers:
        f.run(jobs.rendezvous, rendezvous.address)
    connections = [rendezvous.accept()[0] for _ in blockers]
    marker = tmp_path / 'ran'
    queued = fork_class()
    queued.run(touch, str(marker))
    start = time.monotonic()
    queued.terminate()
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated before it started'):
        queued.wait(timeout=30)
    assert time.monotonic() - start < 2.0
    for conn in connections:
        rendezvous.release(conn)
    for f in blockers:
        f.wait(timeout=30)
    after = fork_class()
    after.run(jobs.add, 1)  # queued behind the terminated one
    assert after.wait(timeout=30) == 1
    assert not marker.exists()


def test_nested_tasks_on_a_single_pool_process(single_slot_worker):
    fork_class = single_slot_worker.fork_class
    f = fork_class()
    f.run(jobs.nested, fork_class, 6)
    assert f.wait(timeout=60) == [1, 2, 3, 4, 5, 6]
    g = fork_class()
    g.run(jobs.fan_out, fork_class, 5)
    assert g.wait(timeout=60) == sum(range(1, 6))
    h = fork_class()
    h.run(jobs.nested, fork_class, 4, jobs.JobError('deep', 4))
    with pytest.raises(jobs.JobError):
        h.wait(timeout=60)
    assert 'in nested' in ''.join(h.traceback)


def test_a_queue_by_name(tmp_path):
    with running_worker(tmp_path, 'redis', concurrency=1) as worker:
        fork_class = worker.fork_class
        f = fork_class(queue=worker.queue)
        f.run(jobs.add, 2, 3)
        assert f.wait(timeout=30) == 5
        g = fork_class(queue=worker.queue + '-nobody-listens')
        g.run(jobs.add, 1)
        with pytest.raises(ColdocTasksTimeoutError):
            g.wait(timeout=0.5)
        g.terminate()
        with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
            g.wait(timeout=5)
        from tests.fixtures_celery import remove_queue

        remove_queue(celery_tasks.app_for(worker.celeryconfig), g.queue)


def test_a_callable_the_worker_cannot_import(celery_worker, tmp_path, monkeypatch):
    (tmp_path / 'only_here.py').write_text('def hello():\n    return "hello"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module('only_here')
    try:
        f = celery_worker.fork_class()
        f.run(module.hello)
        with pytest.raises(ColdocTasksSerializationError, match='cannot be unpickled in worker process'):
            f.wait(timeout=30)
    finally:
        sys.modules.pop('only_here', None)


def test_the_fork_class_and_its_objects_pickle_as_the_celeryconfig(celery_worker):
    fork_class = celery_worker.fork_class
    assert fork_class is fork_class_for(celery_worker.celeryconfig)
    assert pickle.loads(pickle.dumps(fork_class)) is fork_class
    assert issubclass(fork_class, CeleryFork) and fork_class.fork_type == 'celery'
    f = fork_class()
    f.run(jobs.add, 40, 2)
    copy = pickle.loads(pickle.dumps(f))
    assert type(copy) is fork_class and copy.wait(timeout=30) == 42


def test_the_celeryconfig_argument_and_the_environment(celery_worker, monkeypatch):
    f = CeleryFork(celeryconfig=celery_worker.celeryconfig)
    f.run(jobs.add, 1, 2)
    assert f.wait(timeout=30) == 3
    monkeypatch.setenv(celery_tasks.ENV_CELERYCONFIG, str(celery_worker.celeryconfig))
    g = CeleryFork()
    g.run(jobs.add, 3, 4)
    assert g.wait(timeout=30) == 7
    assert get_fork_class() is celery_worker.fork_class
    monkeypatch.delenv(celery_tasks.ENV_CELERYCONFIG)
    with pytest.raises(ColdocTasksUsageError, match='no celeryconfig'):
        CeleryFork()


def test_an_app_of_ones_own(celery_worker):
    app = celery_tasks.make_app(celery_worker.celeryconfig)
    f = CeleryFork(app=app)
    f.run(jobs.add, 5, 5)
    assert f.app is app and f.wait(timeout=30) == 10


def test_get_fork_class_says_why_not(tmp_path):
    with pytest.raises(ColdocTasksBackendUnavailableError, match='does not exist'):
        get_fork_class(celeryconfig=tmp_path / 'missing.py')
    broken = tmp_path / 'broken.py'
    broken.write_text('broker_url = \n')
    with pytest.raises(ColdocTasksBackendUnavailableError, match='cannot be loaded'):
        get_fork_class(celeryconfig=broken)
    unreachable, _ = write_celeryconfig(tmp_path, 'redis', broker_url='redis://127.0.0.1:1/0')
    start = time.monotonic()
    with pytest.raises(ColdocTasksBackendUnavailableError, match='cannot be reached'):
        get_fork_class(celeryconfig=unreachable)
    assert time.monotonic() - start < 1.0


def test_no_worker_answers(tmp_path):
    idle, _ = write_celeryconfig(tmp_path, 'redis')
    start = time.monotonic()
    with pytest.raises(ColdocTasksBackendUnavailableError, match='no Celery worker answers'):
        get_fork_class(celeryconfig=idle)
    assert time.monotonic() - start < 1.5


def test_run_with_the_broker_down_is_a_connection_error(tmp_path):
    unreachable, _ = write_celeryconfig(tmp_path, 'redis', broker_url='redis://127.0.0.1:1/0')
    f = CeleryFork(celeryconfig=unreachable)
    with pytest.raises(ColdocTasksConnectionError, match='cannot send task'):
        f.run(jobs.add, 1)


def test_status_names_the_running_callable(celery_worker, rendezvous):
    f = celery_worker.fork_class()
    f.run(jobs.rendezvous, rendezvous.address)
    conn, (pid,) = rendezvous.accept()
    workers = celery_tasks.status(celery_worker.celeryconfig, timeout=5)
    ((name, info),) = workers.items()
    assert info['concurrency'] == 2 and info['pid']
    active = [(t['id'], t['name'], t['worker_pid']) for t in info['active']]
    assert active == [(f.task_id, 'tests.jobs.rendezvous', pid)]
    assert celery_tasks.RUN_TASK_NAME in info['registered']
    rendezvous.release(conn)
    f.wait(timeout=30)


def test_test_reports_a_round_trip(celery_worker):
    elapsed = celery_tasks.test(celery_worker.celeryconfig, timeout=30)
    assert 0 < elapsed < 30


def test_every_name_keeps_its_import_path_and_the_worker_its_task_names(celery_worker):
    from celery.utils.imports import symbol_by_name

    from coldoc_tasks import celery_app, celery_control
    from coldoc_tasks import celery_worker as worker_side

    for name in celery_tasks.__all__:
        assert getattr(celery_tasks, name) is not None
    assert symbol_by_name('coldoc_tasks.celery_tasks:CeleryTaskPool') is worker_side.CeleryTaskPool
    assert celery_tasks.setup_app is celery_app.setup_app and celery_tasks.daemon is celery_control.daemon
    assert celery_tasks.CeleryFork is CeleryFork  # so fork objects pickled before still load
    # what the submitting side sends is what the worker registered and answers to
    app = celery_tasks.app_for(celery_worker.celeryconfig)
    (registered,) = app.control.inspect(timeout=5).registered().values()
    assert celery_tasks.RUN_TASK_NAME in registered and celery_tasks.RUN_TASK_NAME in app.tasks
    replies = app.control.broadcast(celery_tasks.TERMINATE_COMMAND, arguments={'task_id': 'no-such-task'},
                                    reply=True, timeout=5)
    assert replies and all('not running here' in str(reply) for reply in replies)
