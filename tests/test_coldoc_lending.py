"""Lent slots: a task that waits for its subtask lends its slot, and the
workers started for lent slots are kept, idle, for the next nested task,
then retired after ``lent_worker_keepalive``."""

from __future__ import annotations

import pytest

from coldoc_tasks.coldoc_tasks import bind_fork_class, status
from coldoc_tasks.exceptions import ColdocTasksOptionError
from tests import jobs
from tests.helpers_coldoc import assert_healthy, server_children, wait_until


def _idle_workers(server) -> int:
    return status(server.infofile)['queues'][0]['idle_workers']


def test_a_second_chain_runs_on_the_workers_the_first_one_made(make_server):
    # a keepalive far longer than the test: the workers must still be there
    server = make_server(queues=('default:1:reuse',), lent_worker_keepalive=600)
    F = bind_fork_class(server.infofile)
    first, second = F(), F()
    first.run(jobs.nested_pids, F, 4)
    pids = first.wait(timeout=60)
    assert len(set(pids)) == 4
    second.run(jobs.nested_pids, F, 4)
    assert sorted(second.wait(timeout=60)) == sorted(pids)  # no worker was forked for it
    assert status(server.infofile)['queues'][0]['lent_slots'] == 0
    assert_healthy(server)


def test_surplus_workers_retire_after_the_keepalive(make_server):
    server = make_server(queues=('default:1:reuse',), lent_worker_keepalive=0.5)
    F = bind_fork_class(server.infofile)
    f = F()
    f.run(jobs.nested_pids, F, 5)
    pids = f.wait(timeout=60)
    assert len(set(pids)) == 5
    # back to the queue's concurrency: one idle worker, the others gone
    wait_until(lambda: _idle_workers(server) == 1 and len(server_children(server)) == 1, timeout=30,
               what='the surplus workers to retire',
               explain=lambda: f'{_idle_workers(server)} idle, children {sorted(server_children(server))}')
    (survivor,) = server_children(server)
    assert survivor in pids
    g = F()
    g.run(jobs.getpid)
    assert g.wait(timeout=30) == survivor  # the one kept within the concurrency still serves
    assert_healthy(server)


def test_keepalive_zero_retires_surplus_workers_at_once(make_server):
    server = make_server(queues=('default:1:reuse',), lent_worker_keepalive=0)
    F = bind_fork_class(server.infofile)
    f = F()
    f.run(jobs.nested, F, 4)
    assert f.wait(timeout=60) == [1, 2, 3, 4]
    wait_until(lambda: len(server_children(server)) == 1, timeout=30, what='one worker left',
               explain=lambda: f'children {sorted(server_children(server))}')
    assert status(server.infofile)['lent_worker_keepalive'] == 0


@pytest.mark.parametrize('value', [-1, 'soon', float('nan'), 10**9])
def test_a_nonsense_keepalive_is_refused(make_server, value):
    with pytest.raises(ColdocTasksOptionError, match='^lent_worker_keepalive must be a number of seconds'):
        make_server(lent_worker_keepalive=value)
