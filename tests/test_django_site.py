"""The example Django site, end to end over HTTP against real processes:
runserver and gunicorn, autostart of the coldoc server and of a Celery
worker, and a site hooked to a server started beforehand."""

from __future__ import annotations

import re

import pytest

from tests.conftest import skip_or_fail
from tests.fixtures_django import task_servers

pytest.importorskip('django')

pytestmark = pytest.mark.timeout(240)


def _ppid(pid: int) -> int | None:
    try:
        with open(f'/proc/{pid}/stat') as f:
            return int(f.read().rsplit(')', 1)[1].split()[1])
    except OSError:
        return None


def _schedule_and_collect(site, number: int, expected: str) -> dict:
    """Schedule a computation with a POST, then collect it in the next request."""
    pk = site.schedule(number)
    result = site.get_json(f'/computation/{pk}/?wait=60&format=json')
    assert result['error'] == '', result
    assert result['state'] == 'done', result
    assert result['factors'] == expected
    assert result['worker_pid'] not in (None, result['web_pid'])
    return result


def test_runserver_autostarts_one_server_that_writes_through_the_orm(django_site):
    django_site.configure(COLDOC_TASKS_AUTOSTART='coldoc')
    django_site.manage('migrate', '-v0')
    django_site.runserver()
    status = django_site.get_json('/status/')
    assert status['backend'] == 'coldoc'
    servers = task_servers(django_site.directory)
    assert servers == [status['coldoc_server_pid']], django_site.output()

    result = _schedule_and_collect(django_site, 360, '2 2 2 3 3 5')
    assert result['backend'] == 'coldoc'
    # the task ran in a worker forked from the site's server
    assert _ppid(result['worker_pid']) in (servers[0], None)
    # a second computation, in the same reused worker or another
    _schedule_and_collect(django_site, 97 * 89, '89 97')
    assert task_servers(django_site.directory) == servers


def test_gunicorn_with_four_workers_starts_exactly_one_server(django_site):
    django_site.configure(COLDOC_TASKS_AUTOSTART='coldoc')
    django_site.manage('migrate', '-v0')
    django_site.gunicorn(workers=4)
    # every worker process loads the site, and so autostarts, at about the same time
    output = django_site.wait_output('autostart: coldoc task server', 4)
    assert output.count('autostart: coldoc task server') == 4, output
    servers = task_servers(django_site.directory)
    assert len(servers) == 1, output
    # the four workers all found the one server that one of them started
    assert set(re.findall(r'autostart: coldoc task server for \S+: pid (\d+)', output)) == {str(servers[0])}, output
    assert django_site.get_json('/status/')['coldoc_server_pid'] == servers[0]
    _schedule_and_collect(django_site, 1001, '7 11 13')
    assert task_servers(django_site.directory) == servers


def test_without_autostart_options_no_server_is_started(django_site):
    # the default infofile; a WSGI entry that does not set COLDOC_TASKS_AUTOSTART_OPTIONS
    django_site.configure(COLDOC_TASKS_AUTOSTART='coldoc', COLDOC_TASKS_INFOFILE=None)
    django_site.manage('migrate', '-v0')
    django_site.gunicorn(workers=2, app='django.core.wsgi:get_wsgi_application()')
    status = django_site.get_json('/status/')
    assert status['coldoc_server_pid'] is None
    assert status['backend'] == 'simple'
    assert task_servers(django_site.directory) == []
    assert task_servers(django_site.default_infofile_directory()) == []
    assert 'autostart:' not in django_site.output()


def test_a_site_uses_a_server_already_running_at_its_infofile(django_site):
    django_site.configure(COLDOC_TASKS_AUTOSTART=None)  # the example's settings without autostart
    django_site.manage('migrate', '-v0')
    started = django_site.cli('coldoc', 'django_daemon', '--settings', 'site_settings', '--concurrency', '1')
    assert started.returncode == 0, started.stderr
    (server,) = task_servers(django_site.directory)
    assert f'(pid {server})' in started.stdout

    django_site.gunicorn(workers=2)  # wsgi.py allows autostart, but none is asked for
    status = django_site.get_json('/status/')
    assert status == {**status, 'backend': 'coldoc', 'coldoc_server_pid': server}
    result = _schedule_and_collect(django_site, 2 ** 10, ' '.join(['2'] * 10))
    assert _ppid(result['worker_pid']) in (server, None)
    assert task_servers(django_site.directory) == [server]
    assert 'autostart:' not in django_site.output()


def test_celery_autostart_with_a_celeryconfig(django_site):
    from tests.fixtures_celery import BROKERS, port_open, remove_queue, write_celeryconfig

    host, port, _ = BROKERS['redis']
    if not port_open(host, port):
        skip_or_fail(f'Redis is not reachable on {host}:{port}')
    from coldoc_tasks import celery_tasks

    celeryconfig, queue = write_celeryconfig(django_site.path, 'redis')
    django_site.celeryconfig = celeryconfig
    django_site.configure(COLDOC_TASKS_AUTOSTART='celery', COLDOC_TASKS_CELERYCONFIG=str(celeryconfig))
    django_site.manage('migrate', '-v0')
    try:
        django_site.gunicorn(workers=2)
        django_site.wait_output('autostart: a Celery worker', 2, timeout=120)
        workers = celery_tasks.ping(celeryconfig, timeout=2)
        assert len(workers) == 1, django_site.output()
        assert django_site.get_json('/status/')['backend'] == 'celery'
        result = _schedule_and_collect(django_site, 2 * 3 * 7 * 11, '2 3 7 11')
        assert result['backend'] == 'celery'
        assert celery_tasks.ping(celeryconfig, timeout=2) == workers
        assert task_servers(django_site.directory) == []  # no coldoc server was asked for
    finally:
        django_site.close()
        remove_queue(celery_tasks.app_for(celeryconfig), queue)
