"""The Django Tasks backend (``coldoc_tasks.django.backend.ColdocTasksBackend``)
against a real coldoc server of a real Django site: on Django 6 through
``django.tasks``, on Django 5.2 through the ``django-tasks`` backport.

Each scenario runs in a process of the site (``tests/django_tasks_driver.py``)
and its tasks (``tests/django_tasks_jobs.py``) in the workers of the site's
server; the test reads what the scenario saw.  The behaviours checked are
those Django's own test suite checks of its backends (enqueue, results,
errors, async tasks, context, validation), and what this backend adds:
deferred and prioritised tasks held and ordered by the server, results read
from other processes and over HTTP, cancelling, progress.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error

import pytest

from tests.fixtures_django import ROOT, SITE_DIR, Site
from tests.helpers_coldoc import wait_until

django = pytest.importorskip('django')
if django.VERSION < (6,):
    pytest.importorskip('django_tasks', reason='Django 5.2 needs the django-tasks backport package')

pytestmark = pytest.mark.timeout(240)

BACKEND = 'coldoc_tasks.django.backend.ColdocTasksBackend'
APPS = ['django.contrib.contenttypes', 'django.contrib.staticfiles', 'coldoc_tasks', 'reports',
        *(['django_tasks'] if django.VERSION < (6,) else [])]


def configure(site: Site, **settings) -> None:
    settings.setdefault('TASKS', {'default': {'BACKEND': BACKEND, 'QUEUES': ['default', 'solo']},
                                  'other': {'BACKEND': BACKEND, 'QUEUES': ['default', 'solo']}})
    site.configure(INSTALLED_APPS=APPS, COLDOC_TASKS_AUTOSTART=None, COLDOC_TASKS_QUEUES=['default:2', 'solo:1'],
                   ROOT_URLCONF='tests.django_tasks_urls', **settings)


def python_path(site: Site) -> str:
    """The site, its settings and the tests."""
    return os.pathsep.join([str(SITE_DIR), site.directory, str(ROOT)])


@pytest.fixture(scope='module')
def site():
    """One site and its coldoc server (queues default:2 and solo:1) for the module."""
    site = Site()
    try:
        configure(site)
        started = site.cli('coldoc', 'django_daemon', '--settings', 'site_settings')
        assert started.returncode == 0, started.stdout + started.stderr
        yield site
    finally:
        site.close()


def scenario(site: Site, name: str, *args: str, timeout: float = 120.0, backend: str = 'default') -> dict:
    """Run a scenario of the driver in a new process of the site, its tasks
    on the ``backend`` alias; return what it saw."""
    env = site.environment(PYTHONPATH=python_path(site), TASKS_BACKEND=backend)
    done = subprocess.run([sys.executable, '-m', 'tests.django_tasks_driver', name, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f'scenario {name} failed:\n{done.stdout}\n{done.stderr}'
    return json.loads(done.stdout.strip().splitlines()[-1])


def signals_seen(site: Site) -> list[dict]:
    path = site.path / 'signals.log'
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_enqueue_returns_a_ready_result_that_refresh_follows_to_its_value(site):
    found = scenario(site, 'enqueue_and_follow')
    first = found['first']
    assert first['status'] == 'READY' and not first['is_finished'] and first['worker_ids'] == []
    assert first['times']['enqueued_at'] is not None
    assert first['times']['started_at'] is None and first['times']['finished_at'] is None
    assert found['not_ready'] == 'Task has not finished yet'
    assert found['seen'][-1] == 'SUCCESSFUL' and set(found['seen']) <= {'READY', 'RUNNING', 'SUCCESSFUL'}
    value = found['value']
    assert value['args'] == [1, [2, 3]] and value['kwargs'] == {'key': 'bytes'}  # as JSON has them
    assert value['pid'] != found['web_pid']
    assert found['args'] == [1, [2, 3]] and found['kwargs'] == {'key': 'bytes'}
    times = found['times']
    assert times['enqueued_at'] <= times['started_at'] <= times['finished_at']
    assert times['last_attempted_at'] == times['started_at']
    assert len(found['worker_ids']) == 1 and found['worker_ids'][0].endswith(f':{value["pid"]}')
    assert found['attempts'] == 1
    assert (found['again_status'], found['again']) == ('SUCCESSFUL', value)
    assert found['enqueued_signals'] == [['ColdocTasksBackend', found['id']]]
    assert found['backend'] == 'default'
    # started and finished are sent where the task runs, as Django's own workers do
    seen = [(s['signal'], s['status'], s['pid']) for s in signals_seen(site) if s['id'] == found['id']]
    assert seen == [('started', 'RUNNING', value['pid']), ('finished', 'SUCCESSFUL', value['pid'])]


def test_a_failing_task_records_its_exception_as_django_does(site):
    found = scenario(site, 'errors')
    custom = found['custom']
    assert custom['status'] == 'FAILED' and custom['return_value_error'] == 'Task failed'
    (error,) = custom['errors']
    assert error['path'] == 'tests.django_tasks_jobs.CustomError' and error['class'] == 'CustomError'
    assert error['traceback'].startswith('Traceback (most recent call last):')
    assert 'raise CustomError(message)' in error['traceback']
    assert error['traceback'].rstrip().endswith('tests.django_tasks_jobs.CustomError: it went wrong')
    assert custom['times']['finished_at'] >= custom['times']['started_at']
    (error,) = found['builtin']['errors']
    assert (error['path'], error['class']) == ('builtins.ValueError', 'ValueError')
    assert error['traceback'].rstrip().endswith('ValueError: bad value')
    # a value JSON cannot hold fails the task, as on Django's backends
    (error,) = found['unserialisable']['errors']
    assert found['unserialisable']['status'] == 'FAILED'
    assert error['path'] == 'builtins.TypeError' and 'Unsupported type' in error['traceback']
    failed = {s['id'] for s in signals_seen(site) if s['signal'] == 'finished' and s['status'] == 'FAILED'}
    assert len(failed) >= 3


def test_async_tasks_and_tasks_that_take_a_context(site):
    found = scenario(site, 'async_and_context')
    assert found['async'] == ['SUCCESSFUL', {'value': 42, 'in_loop': True}, []]
    status, value, result_id, errors = found['context']
    assert (status, errors) == ('SUCCESSFUL', [])
    assert value == {'id': result_id, 'attempt': 1, 'status': 'RUNNING', 'label': 'label',
                     'worker_ids': found['context_worker_ids']}


def test_misuse_is_refused_with_django_s_errors(site):
    found = scenario(site, 'validation')
    refused = found['refused']
    assert refused['priority'].startswith('InvalidTask') and 'between -100 and 100' in refused['priority']
    assert 'priority_5' not in refused
    assert refused['naive_run_after'].endswith('run_after must be an aware datetime.')
    assert "Queue 'nowhere' is not valid for backend." in refused['queue']
    assert 'module level' in refused['not_module_level']
    assert "first argument of 'context'" in refused['context_argument']
    assert refused['json_args'].startswith('TypeError: Unsupported type')
    assert found['unknown'].startswith('TaskResultDoesNotExist')
    assert found['mismatch'] == 'TaskResultMismatch'
    assert found['aware_defer_ok'] == 'READY'


def test_arguments_and_values_that_json_would_change_are_refused(site):
    found = scenario(site, 'json_contract')
    refused = found['refused']
    assert refused['int_key'] == "TypeError: args[0] has the key 1, a int: JSON would make it the string '1'"
    assert refused['nested_int_key'].startswith("TypeError: kwargs['deep'][0]['x'] has the key 2")
    assert refused['nan'] == 'ValueError: args[1] is nan, which JSON cannot hold'
    for name, kind, message in [('int_keys', 'TypeError', 'the return value has the key 1'),
                                ('infinity', 'ValueError', 'the return value is inf, which JSON cannot hold')]:
        (error,) = found[name]['errors']
        assert found[name]['status'] == 'FAILED' and found[name]['return_value_error'] == 'Task failed'
        assert error['path'] == f'builtins.{kind}' and message in error['traceback'], error


def test_a_backend_knows_only_the_results_of_its_own_tasks(site):
    found = scenario(site, 'results_of_others')
    assert found['other_reads_own'] == 'SUCCESSFUL other' and found['other_value'] == 7
    for name in ('other_reads_default', 'default_reads_other', 'plain_read', 'other_terminates_default'):
        assert found[name].startswith('TaskResultDoesNotExist'), (name, found[name])
    # the task that is not Django's was neither read nor stopped
    assert found['plain_terminate'].startswith('TaskResultDoesNotExist') and found['plain_state'] == 'deferred'
    assert found['finished_terminate'] == 'SUCCESSFUL default' and found['finished_value'] == 3
    assert found['unknown_terminate'].startswith('TaskResultDoesNotExist')


def test_the_async_api_a_whole_float_priority_and_a_past_run_after(site):
    found = scenario(site, 'async_api')
    assert found == {'status': 'SUCCESSFUL', 'value': 42, 'read_id': True, 'read_priority': 5, 'attempts': 1}


def test_a_deferred_task_does_not_start_before_its_time(site):
    found = scenario(site, 'defer', '1.0')
    assert found['status'] == 'SUCCESSFUL' and found['status_after_enqueue'] == 'READY'
    assert found['started'] >= found['run_after'], (
        f'the task started {found["run_after"] - found["started"]:.3f} s before its run_after')
    assert found['started_at'] >= found['run_after']


def test_a_higher_priority_enqueued_later_runs_first_on_a_busy_queue(site, tmp_path):
    gate = os.path.join(site.directory, 'gate')
    os.mkfifo(gate)
    found = scenario(site, 'priority', gate)
    assert found['blocker'] == 'open'
    assert found['order'] == ['fourth-top', 'third-high', 'second-default', 'first-low']


def test_a_result_is_read_from_another_process_as_often_as_wanted(site):
    enqueued = scenario(site, 'enqueue_only')
    read = scenario(site, 'read_result', enqueued['id'])
    assert read['pid'] != enqueued['pid']
    assert read['statuses'] == ['SUCCESSFUL'] * 3 and read['values'] == [42] * 3
    assert read['args'] == [20, 22] and read['task'] == 'tests.django_tasks_jobs.add'


def test_terminate_cancels_a_waiting_task_and_stops_a_running_one(site):
    gate = os.path.join(site.directory, 'gate-terminate')
    os.mkfifo(gate)
    found = scenario(site, 'terminate', gate)
    status, errors, started_at = found['cancelled']
    assert (status, started_at) == ('FAILED', None)
    first, again = found['cancelled_finished_at']
    assert first is not None and first == again  # it ended once, however often it is read
    assert errors[0]['path'] == 'coldoc_tasks.exceptions.ColdocTasksProcessLookupError'
    assert 'cancelled before it ran: terminate() was called' in errors[0]['traceback']
    status, errors = found['terminated']
    assert status == 'FAILED' and 'was terminated' in errors[0]['traceback']


def test_progress_reports_are_read_by_result_id(site):
    found = scenario(site, 'progress')
    assert found == {'status': 'SUCCESSFUL', 'progress': [50, 50, 'counting', {'stage': 'count'}]}


def test_a_view_enqueues_and_a_later_request_reads_the_result(site):
    site.gunicorn(workers=2, PYTHONPATH=python_path(site))
    enqueued = site.get_json('/enqueue/?a=40&b=2')
    assert enqueued['status'] == 'READY'
    answers = []

    def finished() -> bool:
        answers.append(site.get_json(f'/result/{enqueued["id"]}/'))
        return answers[-1]['status'] == 'SUCCESSFUL'

    wait_until(finished, timeout=60, what='the result reads SUCCESSFUL over HTTP', explain=lambda: answers[-1:])
    assert answers[-1]['value'] == 42
    with pytest.raises(urllib.error.HTTPError) as raised:
        site.get_json(f'/result/{"0" * 32}/')
    assert raised.value.code == 404


def test_manage_check_reports_bad_options_and_queues_the_server_lacks(django_site):
    configure(django_site, TASKS={
        'default': {'BACKEND': BACKEND, 'QUEUES': ['default', 'solo']},
        'misspelt': {'BACKEND': BACKEND, 'OPTIONS': {'SERVR': 'coldoc'}},
        'elsewhere': {'BACKEND': BACKEND, 'OPTIONS': {'SERVER': 'rq'}},
        'ghosts': {'BACKEND': BACKEND, 'QUEUES': ['default', 'solo', 'ghost']},
    })
    checked = django_site.manage('check', check=False, PYTHONPATH=python_path(django_site))
    output = checked.stdout + checked.stderr
    assert checked.returncode != 0, output
    assert "coldoc_tasks.E101) TASKS['misspelt']: OPTIONS has an unknown key 'SERVR'" in output
    assert "coldoc_tasks.E101) TASKS['elsewhere']: OPTIONS[\"SERVER\"] is 'rq'" in output
    assert "coldoc_tasks.E102) TASKS['ghosts'][\"QUEUES\"] lists 'ghost', which the coldoc server does not run" \
        in output
    assert "TASKS['default']" not in output
