"""The Django Tasks backend moved to Celery by configuration (``OPTIONS =
{"SERVER": "celery"}``): the same tasks, the same scenarios as
``test_django_tasks.py``, on a real Celery worker of the site over Redis,
Django set up in it."""

from __future__ import annotations

import os

import pytest

from tests.conftest import skip_or_fail
from tests.fixtures_django import Site
from tests.test_django_tasks import BACKEND, configure, scenario, signals_seen

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope='module')
def site():
    """A site whose ``celery`` alias runs tasks on a Celery worker of its own queue."""
    from tests.fixtures_celery import BROKERS, port_open, remove_queue, write_celeryconfig

    host, port, _ = BROKERS['redis']
    if not port_open(host, port):
        skip_or_fail(f'Redis is not reachable on {host}:{port}')
    from coldoc_tasks import celery_tasks

    site = Site()
    celeryconfig, queue = write_celeryconfig(site.path, 'redis')
    site.celeryconfig = celeryconfig
    try:
        configure(site, COLDOC_TASKS_CELERYCONFIG=str(celeryconfig), TASKS={
            'default': {'BACKEND': BACKEND, 'QUEUES': ['default', 'solo']},
            'celery': {'BACKEND': BACKEND, 'OPTIONS': {'SERVER': 'celery'}},
        })
        assert scenario(site, 'start_celery')['pid'], site.output()
        yield site
    finally:
        site.close()
        remove_queue(celery_tasks.app_for(celeryconfig), queue)


def test_enqueue_and_follow_on_celery(site):
    found = scenario(site, 'enqueue_and_follow', backend='celery')
    assert found['first']['status'] == 'READY'
    assert found['seen'][-1] == 'SUCCESSFUL'
    value = found['value']
    assert value['args'] == [1, [2, 3]] and value['kwargs'] == {'key': 'bytes'}
    times = found['times']
    assert times['enqueued_at'] <= times['started_at'] <= times['finished_at']
    assert found['worker_ids'][0].endswith(f':{value["pid"]}') and found['attempts'] == 1
    assert found['again'] == value and found['backend'] == 'celery'
    seen = [(s['signal'], s['status'], s['pid']) for s in signals_seen(site) if s['id'] == found['id']]
    assert seen == [('started', 'RUNNING', value['pid']), ('finished', 'SUCCESSFUL', value['pid'])]


def test_errors_on_celery(site):
    found = scenario(site, 'errors', backend='celery')
    (error,) = found['custom']['errors']
    assert found['custom']['status'] == 'FAILED'
    assert error['path'] == 'tests.django_tasks_jobs.CustomError'
    assert error['traceback'].rstrip().endswith('tests.django_tasks_jobs.CustomError: it went wrong')
    assert found['builtin']['errors'][0]['path'] == 'builtins.ValueError'


def test_async_and_context_on_celery(site):
    found = scenario(site, 'async_and_context', backend='celery')
    assert found['async'] == ['SUCCESSFUL', {'value': 42, 'in_loop': True}, []]
    assert found['context'][1]['attempt'] == 1 and found['context'][1]['id'] == found['context'][2]


def test_defer_on_celery(site):
    found = scenario(site, 'defer', '1.0', backend='celery')
    assert found['status'] == 'SUCCESSFUL'
    assert found['started'] >= found['run_after']


def test_a_result_read_from_another_process_on_celery(site):
    enqueued = scenario(site, 'enqueue_only', backend='celery')
    read = scenario(site, 'read_result', enqueued['id'], backend='celery')
    assert read['statuses'] == ['SUCCESSFUL'] * 3 and read['values'] == [42] * 3


def test_terminate_on_celery(site):
    gate = os.path.join(site.directory, 'gate-terminate')
    os.mkfifo(gate)
    found = scenario(site, 'terminate', gate, backend='celery')
    status, errors, started_at = found['cancelled']
    assert (status, started_at) == ('FAILED', None)
    first, again = found['cancelled_finished_at']
    assert first is not None and first == again  # it ended once, however often it is read
    assert errors[0]['path'] == 'coldoc_tasks.exceptions.ColdocTasksProcessLookupError'
    assert found['terminated'][0] == 'FAILED'


def test_priority_is_refused_on_celery_and_unknown_ids_do_not_exist(site):
    found = scenario(site, 'validation', backend='celery')
    assert 'does not support setting priority' in found['refused']['priority_5']
    assert found['unknown'].startswith('TaskResultDoesNotExist')


def test_terminate_leaves_a_finished_task_and_refuses_an_unknown_id_on_celery(site):
    found = scenario(site, 'terminate_ended', backend='celery')
    assert found['finished'] == 'SUCCESSFUL celery' and found['value'] == 5
    assert found['unknown'].startswith('TaskResultDoesNotExist')
