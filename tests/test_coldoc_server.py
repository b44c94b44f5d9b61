"""Features of the coldoc server beyond the contract: queues, modes,
preloading, retention."""

from __future__ import annotations

import pytest

from coldoc_tasks.coldoc.queues import QueueConfig
from coldoc_tasks.coldoc_tasks import bind_fork_class, ping, status
from coldoc_tasks.exceptions import ColdocTasksUsageError
from tests import jobs, preloaded_module
from tests.helpers_coldoc import assert_healthy, counters, server_children, wait_until


def test_fresh_mode_runs_each_task_in_a_process_forked_in_advance(make_server):
    server = make_server(queues=('default:1:fresh',))
    F = bind_fork_class(server.infofile)
    first = F()
    first.run(jobs.getpid)
    used = first.wait(timeout=10)
    wait_until(lambda: len(server_children(server) - {used}) == 1, what='a spare worker forked')
    (spare,) = server_children(server) - {used}
    second = F()
    second.run(jobs.getpid)
    assert second.wait(timeout=10) == spare
    assert_healthy(server)


def test_preloaded_modules_are_imported_once_in_the_server(make_server):
    server = make_server(queues=('default:1:fresh',), preload=['tests.preloaded_module'])
    F = bind_fork_class(server.infofile)
    f = F()
    f.run(preloaded_module.where_imported)
    imported_in, parent = f.wait(timeout=10)
    assert imported_in == parent == server.pid


def test_named_queues_have_their_own_limits(make_server, rendezvous):
    server = make_server(queues=('default:2:reuse', 'pdf:1:reuse'))
    F = bind_fork_class(server.infofile)
    held = F(queue='pdf')
    held.run(jobs.rendezvous, rendezvous.address, 'pdf done')
    conn, _ = rendezvous.accept()
    waiting = F(queue='pdf')
    waiting.run(jobs.add, 1, 1)
    other = F()  # the default queue is not held up by pdf
    other.run(jobs.add, 2, 2)
    assert other.wait(timeout=10) == 4
    queues = {q['name']: q for q in status(server.infofile)['queues']}
    assert queues['pdf']['running'] == 1 and queues['pdf']['queued'] == 1
    rendezvous.release(conn)
    assert held.wait(timeout=10) == 'pdf done' and waiting.wait(timeout=10) == 2
    assert_healthy(server)


@pytest.mark.parametrize('queue', [True, None])
def test_true_and_none_mean_the_default_queue(coldoc_server, queue):
    f = bind_fork_class(coldoc_server.infofile)(queue=queue)
    assert f.queue == 'default'
    f.run(jobs.add, 1)
    assert f.wait(timeout=10) == 1


def test_a_bad_queue_name_is_refused(coldoc_server):
    with pytest.raises(ColdocTasksUsageError, match='queue'):
        bind_fork_class(coldoc_server.infofile)(queue=3)


@pytest.mark.parametrize('spec, message', [
    ('', 'non-empty'), ('q:0', 'concurrency'), ('q:x', 'integers'), ('q:1:sometimes', 'mode'),
    ('q:1:reuse:0', 'max_tasks_per_worker'), ('a:1:reuse:2:extra', 'NAME'),
])
def test_queue_specs_are_checked(spec, message):
    with pytest.raises(ValueError, match=message):
        QueueConfig.parse(spec)


def test_queue_spec_parsing():
    assert QueueConfig.parse('pdf:3:fresh:7') == QueueConfig('pdf', 3, 'fresh', 7)
    assert QueueConfig.parse('pdf').mode == 'reuse'


def test_a_failing_hook_fails_the_task_and_names_the_hook(make_server):
    from coldoc_tasks.exceptions import ColdocTasksException

    server = make_server(queues=('default:1:reuse',), preload=['tests.failing_hook'])
    F = bind_fork_class(server.infofile)
    forks = [F() for _ in range(200)]  # about one in sixteen is refused
    for f in forks:
        f.run(jobs.getpid)
    outcomes = [f.wait(timeout=10, raise_exception=False) for f in forks]
    refused = [o for f, o in zip(forks, outcomes, strict=True) if f.task_id.endswith('0')]
    ran = [o for f, o in zip(forks, outcomes, strict=True) if not f.task_id.endswith('0')]
    assert refused and all(isinstance(o, ColdocTasksException) and 'refuse_some' in str(o) for o in refused)
    assert ran and len(set(ran)) == 1  # the same worker ran them all: it survived the hook's failures
    # (not assert_healthy: its own trivial task is refused too when its id ends in 0)
    assert ping(server.infofile, timeout=5)['pid'] == server.pid
    assert counters(server)['lost'] == 0
