"""The fork-class contract, run against every backend (see conftest.py)."""

from __future__ import annotations

import pickle
import re
import sys
import threading
import time

import pytest

from coldoc_tasks.exceptions import (
    ColdocTasksException,
    ColdocTasksNotSupportedError,
    ColdocTasksProcessLookupError,
    ColdocTasksRemoteError,
    ColdocTasksRemoteTraceback,
    ColdocTasksSerializationError,
    ColdocTasksTimeoutError,
    ColdocTasksUnknownTaskError,
    ColdocTasksUsageError,
)
from tests import jobs
from tests.helpers import wait_process_gone


def needs_process(backend):
    if backend.fork_class.runs_inline:
        pytest.skip(f'{backend} runs tasks inline')


def needs(backend, capability: str):
    """Skip unless the backend's fork class declares ``capability``."""
    if not getattr(backend.fork_class, capability):
        pytest.skip(f'{backend} does not declare {capability}')


def test_fork_type_and_task_id(backend):
    f = backend.make()
    assert f.fork_type == re.split('[-_]', backend.name)[0]
    assert f.task_id is None
    f.run(jobs.add, 1, 2)
    assert isinstance(f.task_id, str) and f.task_id
    assert f.wait() == 3


def test_returns_value_with_args_and_kwargs(backend):
    f = backend.make()
    f.run(jobs.add, 'a', b='b')
    assert f.wait() == 'ab'
    assert f.exception is None and f.traceback is None


def test_wait_twice_returns_the_same_value(backend):
    f = backend.make()
    f.run(jobs.identity, {'k': [1, 2]})
    assert f.wait() == {'k': [1, 2]}
    assert f.wait() == {'k': [1, 2]}


def test_exception_type_args_and_remote_traceback(backend):
    f = backend.make()
    f.run(jobs.fail, 'bad', 42)
    with pytest.raises(jobs.JobError) as info:
        f.wait()
    assert info.value.args == ('bad', 42)
    assert f.exception is info.value
    assert isinstance(f.traceback, list) and all(isinstance(line, str) for line in f.traceback)
    text = ''.join(f.traceback)
    assert 'in fail' in text and 'raise JobError(*args)' in text
    if not backend.fork_class.runs_inline:
        assert isinstance(info.value.__cause__, ColdocTasksRemoteTraceback)
        assert 'in fail' in str(info.value.__cause__)


def test_raise_exception_false_returns_the_exception(backend):
    f = backend.make()
    f.run(jobs.fail_with_value_error, 'nope')
    exc = f.wait(raise_exception=False)
    assert isinstance(exc, ValueError) and exc.args == ('nope',)
    assert f.exception is exc


def test_use_fork_false_runs_inline_with_same_semantics(backend):
    f = backend.make(use_fork=False)
    f.run(jobs.getpid)
    assert f.wait() == __import__('os').getpid()
    g = backend.make(use_fork=False)
    g.run(jobs.fail, 'inline')
    with pytest.raises(jobs.JobError):
        g.wait()
    assert 'in fail' in ''.join(g.traceback)


def test_runs_in_another_process_unless_inline(backend):
    f = backend.make()
    f.run(jobs.getpid)
    pid = f.wait()
    assert (pid == __import__('os').getpid()) == backend.fork_class.runs_inline


def test_wait_before_run_is_a_clear_error(backend):
    f = backend.make()
    with pytest.raises(ColdocTasksUsageError, match='before run'):
        f.wait()
    assert issubclass(ColdocTasksUsageError, ColdocTasksException)


def test_run_twice_is_a_clear_error(backend):
    f = backend.make()
    f.run(jobs.add, 1)
    with pytest.raises(ColdocTasksUsageError, match='already called'):
        f.run(jobs.add, 2)
    assert f.wait() == 1


def test_run_needs_a_callable(backend):
    with pytest.raises(ColdocTasksUsageError, match='callable'):
        backend.make().run(42)


def test_bad_timeout_is_refused(backend):
    with pytest.raises(ValueError, match='timeout'):
        backend.make(timeout=-1)
    f = backend.make()
    f.run(jobs.add, 1)
    with pytest.raises(TypeError, match='timeout'):
        f.wait(timeout='soon')


def test_timeout_then_second_wait_succeeds(backend, rendezvous):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.rendezvous, rendezvous.address, 'late')
    conn, _ = rendezvous.accept()
    start = time.monotonic()
    with pytest.raises(ColdocTasksTimeoutError) as info:
        f.wait(timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert 0.15 <= time.monotonic() - start < 2.0
    rendezvous.release(conn)
    assert f.wait(timeout=30) == 'late'


def test_constructor_timeout_is_the_default(backend, rendezvous):
    needs_process(backend)
    f = backend.make(timeout=0.2)
    f.run(jobs.rendezvous, rendezvous.address, 'v')
    conn, _ = rendezvous.accept()
    with pytest.raises(ColdocTasksTimeoutError):
        f.wait()
    rendezvous.release(conn)
    assert f.wait(timeout=30) == 'v'


def test_killed_process_is_reported_promptly(backend, rendezvous):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.rendezvous, rendezvous.address)
    _, (pid,) = rendezvous.accept()
    import os
    import signal
    os.kill(pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGKILL'):
        f.wait(timeout=30)
    assert time.monotonic() - start < 1.0
    # and it stays so
    with pytest.raises(ColdocTasksProcessLookupError):
        f.wait()


def test_os_exit_is_reported_with_its_code(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.exit_with, 3)
    with pytest.raises(ColdocTasksProcessLookupError, match='code 3'):
        f.wait(timeout=30)


def test_segfault_is_reported_with_its_signal(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.segfault)
    with pytest.raises(ColdocTasksProcessLookupError, match='SIGSEGV'):
        f.wait(timeout=30)


def test_terminate_a_running_task(backend, rendezvous):
    needs_process(backend)
    needs(backend, 'can_terminate')
    f = backend.make()
    f.run(jobs.rendezvous, rendezvous.address)
    _, (pid,) = rendezvous.accept()
    f.terminate()
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        f.wait(timeout=30)
    assert wait_process_gone(pid)


def test_terminate_kills_a_task_ignoring_sigterm_and_its_grandchild(backend, rendezvous):
    needs_process(backend)
    needs(backend, 'can_terminate')
    f = backend.make()
    f.run(jobs.rendezvous, rendezvous.address, ignore_sigterm=True, spawn_grandchild=True)
    _, (pid, grandchild) = rendezvous.accept()
    start = time.monotonic()
    f.terminate()
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        f.wait(timeout=30)
    assert time.monotonic() - start < f.terminate_grace + 5
    assert wait_process_gone(pid)
    assert wait_process_gone(grandchild)


def test_terminate_after_finish_changes_nothing(backend):
    f = backend.make()
    f.run(jobs.add, 5)
    assert f.wait() == 5
    if not backend.fork_class.can_terminate:
        with pytest.raises(ColdocTasksNotSupportedError):
            f.terminate()
    else:
        f.terminate()
    assert f.wait() == 5


def test_unpicklable_result_is_a_clear_error(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.return_generator)
    with pytest.raises(ColdocTasksSerializationError, match='generator'):
        f.wait(timeout=30)
    g = backend.make()
    g.run(jobs.add, 1, 1)
    assert g.wait(timeout=30) == 2


def test_unpicklable_exception_arrives_as_a_substitute(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.raise_unpicklable, 'with a lock')
    with pytest.raises(ColdocTasksRemoteError) as info:
        f.wait(timeout=30)
    assert info.value.type_name == 'tests.jobs.UnpicklableError'
    assert info.value.message == 'with a lock'
    assert 'raise_unpicklable' in info.value.remote_traceback
    assert 'raise_unpicklable' in ''.join(f.traceback)


def test_unrebuildable_exception_arrives_as_a_substitute(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.raise_unrebuildable, 'a', 'b')
    with pytest.raises(ColdocTasksRemoteError) as info:
        f.wait(timeout=30)
    assert info.value.type_name == 'tests.jobs.UnrebuildableError'
    assert info.value.message == 'a-b'


def test_exception_the_waiter_cannot_import_keeps_its_story(backend):
    needs_process(backend)
    assert jobs.WORKER_ONLY_MODULE not in sys.modules
    f = backend.make()
    f.run(jobs.raise_worker_only, 'only over there')
    with pytest.raises(ColdocTasksRemoteError) as info:
        f.wait(timeout=30)
    error = info.value
    assert error.type_name == f'{jobs.WORKER_ONLY_MODULE}.WorkerOnlyError'
    assert error.message == 'only over there'
    assert 'raise_worker_only' in error.remote_traceback
    assert 'WorkerOnlyError: only over there' in error.remote_traceback
    assert 'cannot be unpickled' in error.reason and jobs.WORKER_ONLY_MODULE in error.reason
    assert isinstance(error.__cause__, ColdocTasksRemoteTraceback) and 'raise_worker_only' in str(error.__cause__)
    assert f.exception is error and 'raise_worker_only' in ''.join(f.traceback)
    assert f.wait(raise_exception=False) is error
    assert jobs.WORKER_ONLY_MODULE not in sys.modules


def test_value_the_waiter_cannot_import_is_a_clear_error(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.return_worker_only)
    with pytest.raises(ColdocTasksSerializationError, match=f'of type {jobs.WORKER_ONLY_MODULE}.WorkerOnlyValue'
                       '.* cannot be unpickled in this process'):
        f.wait(timeout=30)
    g = backend.make()
    g.run(jobs.add, 1, 2)
    assert g.wait(timeout=30) == 3


def test_unpicklable_argument(backend):
    f = backend.make()
    lock = threading.Lock()
    if backend.fork_class.pickles_arguments:
        with pytest.raises(ColdocTasksSerializationError, match='lock'):
            f.run(jobs.identity, lock)
        assert f.task_id is None
    else:
        # passed through fork() or inline: no pickling needed for arguments
        f.run(_type_name, lock)
        assert f.wait(timeout=30) == 'lock'


def _type_name(value):
    return type(value).__name__


def test_pickled_fork_object_can_wait(backend):
    f = backend.make()
    f.run(jobs.add, 20, 22)
    copy = pickle.loads(pickle.dumps(f))
    assert copy.task_id == f.task_id
    assert copy.wait(timeout=30) == 42
    assert f.wait(timeout=30) == 42


def test_pickled_fork_object_waited_in_another_process(backend):
    needs_process(backend)
    f = backend.make()
    f.run(jobs.add, 1, 2)
    data = pickle.dumps(f)
    from coldoc_tasks.simple_tasks import SimpleFork
    other = SimpleFork()
    other.run(_wait_pickled, data)
    result = other.wait(timeout=60)
    if not backend.fork_class.shared_wait:
        assert isinstance(result, ColdocTasksUsageError)
        assert 'only from the process that ran it' in str(result)
        assert f.wait(timeout=30) == 3
        return
    assert result == 3
    # The other process collected the result: a second collection either
    # finds it again (where results persist) or says clearly that it is gone.
    try:
        assert f.wait(timeout=30) == 3
    except ColdocTasksUnknownTaskError as exc:
        assert 'already collected by process' in str(exc)


def _wait_pickled(data):
    try:
        return pickle.loads(data).wait(timeout=30)
    except ColdocTasksException as exc:
        return exc


def test_nested_tasks_depth_4(backend):
    needs(backend, 'nested_waits')
    f = backend.make()
    f.run(jobs.nested, backend.make, 4)
    assert f.wait(timeout=60) == [1, 2, 3, 4]


def test_nested_exception_arrives_at_the_top(backend):
    needs(backend, 'nested_waits')
    f = backend.make()
    f.run(jobs.nested, backend.make, 4, jobs.JobError('deep', 4))
    with pytest.raises(jobs.JobError) as info:
        f.wait(timeout=60)
    assert info.value.args == ('deep', 4)
    assert 'raise leaf' in ''.join(f.traceback)  # the bottom frame, four levels down


def test_task_fans_out_subtasks(backend):
    needs(backend, 'nested_waits')
    f = backend.make()
    f.run(jobs.fan_out, backend.make, 6)
    assert f.wait(timeout=60) == sum(range(1, 7))


def test_seed_example_list_of_jobs(backend):
    a = list([1, 3, 4, 5, 6, 99])
    ff = {}
    for j in a:
        ff[j] = backend.make(use_fork=(len(a) > 1))
        ff[j].run(jobs.add, j, 1)
    assert [ff[j].wait(timeout=60) for j in a] == [j + 1 for j in a]


def test_eight_threads_share_fork_objects(backend):
    forks = [backend.make() for _ in range(16)]
    for i, f in enumerate(forks):
        f.run(jobs.add, i, 100)
    results = {}
    errors = []
    barrier = threading.Barrier(8)

    def worker(n):
        try:
            barrier.wait(timeout=30)
            results[n] = [f.wait(timeout=60) for f in forks]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert all(results[n] == [i + 100 for i in range(16)] for n in range(8))


def test_eight_threads_each_run_tasks(backend):
    errors = []
    results = {}

    def worker(n):
        try:
            forks = [backend.make() for _ in range(10)]
            for i, f in enumerate(forks):
                f.run(jobs.add, n, i)
            results[n] = [f.wait(timeout=60) for f in forks]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == {n: [n + i for i in range(10)] for n in range(8)}


def test_300_tasks_in_flight(backend):
    forks = [backend.make() for _ in range(300)]
    for i, f in enumerate(forks):
        f.run(jobs.add, i, 1)
    assert [f.wait(timeout=120) for f in forks] == [i + 1 for i in range(300)]
