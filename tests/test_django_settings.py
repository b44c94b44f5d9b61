"""The Django settings, the autostart rules, the system checks and the
commands (``manage.py coldoc_tasks ...`` and ``coldoc_tasks_cli coldoc
django_...``), against real processes where a server is involved."""

from __future__ import annotations

import os
import pathlib
import stat
import types

import pytest

from coldoc_tasks import django_support
from coldoc_tasks.coldoc.context import IN_SERVER_ENV
from tests.fixtures_django import connection_state, task_servers

pytest.importorskip('django')


def _settings(**values) -> types.SimpleNamespace:
    return types.SimpleNamespace(SETTINGS_MODULE='some.settings', **values)


def test_settings_accept_str_and_path(tmp_path):
    conf = django_support.read_settings(_settings(
        COLDOC_TASKS_INFOFILE=tmp_path / 'info', COLDOC_TASKS_SOCKET=str(tmp_path / 's'),
        COLDOC_TASKS_PASSWORD='secret', COLDOC_TASKS_CELERYCONFIG=tmp_path / 'celeryconfig.py',
        COLDOC_TASKS_AUTOSTART='coldoc, celery', COLDOC_TASKS_LOGFILE=tmp_path / 'log',
        COLDOC_TASKS_PYTHONPATH=[tmp_path, str(tmp_path / 'b')]))
    assert conf.infofile == str(tmp_path / 'info') and not conf.default_infofile
    assert conf.socket == str(tmp_path / 's')
    assert conf.password == b'secret'
    assert conf.autostart == ('coldoc', 'celery')
    assert conf.pythonpath == (str(tmp_path), str(tmp_path / 'b'))
    assert conf.celery_logfile == str(tmp_path / 'log-celery.log')
    assert django_support.read_settings(_settings(COLDOC_TASKS_PYTHONPATH=tmp_path)).pythonpath == (str(tmp_path),)


def test_default_infofile_is_private_and_the_same_for_every_process_of_a_site():
    first = django_support.read_settings(_settings())
    again = django_support.read_settings(_settings())
    other = django_support.read_settings(types.SimpleNamespace(SETTINGS_MODULE='other.settings'))
    try:
        assert first.default_infofile and first.infofile == again.infofile != other.infofile
        assert first.socket is None and first.password is None and first.autostart == ()
        mode = os.stat(os.path.dirname(first.infofile)).st_mode
        assert stat.S_IMODE(mode) == 0o700
    finally:
        for conf in (first, other):
            os.rmdir(os.path.dirname(conf.infofile))


@pytest.mark.parametrize('value, expected', [
    (None, ()), ('', ()), (False, ()), ('coldoc', ('coldoc',)), (['celery', 'coldoc'], ('celery', 'coldoc')),
    (True, ('coldoc',)),
])
def test_autostart_setting(value, expected):
    assert django_support.parse_autostart(value) == expected


def test_autostart_true_includes_celery_when_configured():
    assert django_support.parse_autostart(True, '/x/celeryconfig.py') == ('coldoc', 'celery')


@pytest.mark.parametrize('value', ['coldoc,rabbit', ['redis'], 3])
def test_autostart_setting_refuses_unknown_names(value):
    with pytest.raises(django_support.ColdocTasksSettingsError, match='COLDOC_TASKS_AUTOSTART'):
        django_support.parse_autostart(value)


def test_a_wrong_type_is_refused():
    with pytest.raises(django_support.ColdocTasksSettingsError, match='COLDOC_TASKS_INFOFILE'):
        django_support.read_settings(_settings(COLDOC_TASKS_INFOFILE=42))


@pytest.mark.parametrize('options, allowed', [
    (None, set()), ('', set()), ('autostart', {'coldoc', 'celery'}), ('all', {'coldoc', 'celery'}),
    ('coldoc', {'coldoc'}), ('celery', {'celery'}), ('celery, coldoc', {'coldoc', 'celery'}), ('nothing', set()),
])
def test_autostart_options_environment_variable(options, allowed):
    environ = {} if options is None else {django_support.AUTOSTART_OPTIONS_ENV: options}
    assert {name for name in ('coldoc', 'celery') if django_support.autostart_allowed(name, environ)} == allowed
    # never from inside a task server, whatever the variable says
    environ[IN_SERVER_ENV] = '123'
    assert not any(django_support.autostart_allowed(name, environ) for name in ('coldoc', 'celery'))


def test_what_is_started_never_autostarts_and_finds_the_site(tmp_path):
    conf = django_support.read_settings(_settings(COLDOC_TASKS_INFOFILE=tmp_path / 'i',
                                                  COLDOC_TASKS_PYTHONPATH=[tmp_path]))
    env = django_support.server_environment(conf, {django_support.AUTOSTART_OPTIONS_ENV: 'autostart',
                                                   IN_SERVER_ENV: '1', 'PYTHONPATH': '/elsewhere'})
    assert django_support.AUTOSTART_OPTIONS_ENV not in env and IN_SERVER_ENV not in env
    assert env['DJANGO_SETTINGS_MODULE'] == 'some.settings'
    assert env['PYTHONPATH'] == os.pathsep.join([str(tmp_path), '/elsewhere'])


# -- manage.py check ------------------------------------------------------------------


def test_check_passes_on_the_example_settings(django_site):
    django_site.configure()
    assert 'no issues' in django_site.manage('check').stdout


def test_check_reports_bad_settings_with_ids(django_site):
    not_a_directory = django_site.path / 'file'
    not_a_directory.write_text('')
    django_site.configure(COLDOC_TASKS_AUTOSTART='coldoc,rabbit',
                          COLDOC_TASKS_CELERYCONFIG=str(django_site.path / 'missing.py'),
                          COLDOC_TASKS_INFOFILE=str(not_a_directory / 'info'),
                          COLDOC_TASKS_SOCKET='/' + 'x' * 120,
                          COLDOC_TASKS_PYTHONPATH=str(django_site.path / 'nowhere'))
    result = django_site.manage('check', check=False)
    assert result.returncode != 0
    for needle in ['coldoc_tasks.E001', "'rabbit'", 'coldoc_tasks.E002', 'missing.py', 'coldoc_tasks.E004',
                   'is not a directory', 'coldoc_tasks.E005', 'coldoc_tasks.W001']:
        assert needle in result.stderr, result.stderr


def test_check_reports_celery_autostart_without_celeryconfig(django_site):
    django_site.configure(COLDOC_TASKS_AUTOSTART='celery', COLDOC_TASKS_PASSWORD=12)
    result = django_site.manage('check', check=False)
    assert 'coldoc_tasks.E003' in result.stderr and 'coldoc_tasks.E006' in result.stderr, result.stderr


# -- the commands ------------------------------------------------------------------------


def test_manage_py_commands_control_the_site_server(django_site):
    django_site.configure(COLDOC_TASKS_AUTOSTART=None, COLDOC_TASKS_PASSWORD='a password')
    django_site.manage('migrate', '-v0')
    assert django_site.manage('coldoc_tasks', 'ping', check=False).returncode != 0
    assert django_site.manage('coldoc_tasks', 'pid', check=False).returncode != 0

    started = django_site.manage('coldoc_tasks', 'daemon', '--concurrency', '1', '--preload', 'reports.tasks')
    (server,) = task_servers(django_site.directory)
    assert f'(pid {server})' in started.stdout
    assert django_site.manage('coldoc_tasks', 'pid').stdout.strip() == str(server)
    assert f'pong from pid {server}' in django_site.manage('coldoc_tasks', 'ping').stdout
    status = django_site.manage('coldoc_tasks', 'status').stdout
    assert 'settings module   site_settings' in status and 'backend now       coldoc' in status
    assert f'coldoc task server pid {server}' in status
    assert 'default              1 reuse' in status
    # the same through coldoc_tasks_cli
    answer = django_site.cli('coldoc', 'django_ping', '--settings', 'site_settings')
    assert f'pong from pid {server}' in answer.stdout, answer.stderr

    tested = django_site.manage('coldoc_tasks', 'test', timeout=180)
    assert '0 failure(s)' in tested.stdout and 'ok   django: worker' in tested.stdout, tested.stdout

    # a second daemon refuses: one runs
    assert django_site.manage('coldoc_tasks', 'daemon', check=False).returncode != 0
    assert task_servers(django_site.directory) == [server]

    stopped = django_site.cli('coldoc', 'django_stop', '--settings', 'site_settings')
    assert stopped.returncode == 0, stopped.stderr
    assert task_servers(django_site.directory) == []


def test_workers_never_inherit_or_keep_a_database_connection(django_site):
    from coldoc_tasks.coldoc_tasks import bind_fork_class

    django_site.configure(COLDOC_TASKS_AUTOSTART=None)
    django_site.manage('migrate', '-v0')
    django_site.manage('coldoc_tasks', 'daemon', '--concurrency', '1')
    fork_class = bind_fork_class(django_site.infofile)
    answers = []
    for _ in range(3):  # one reused worker: each task finds the connection closed
        f = fork_class()
        f.run(connection_state)
        answers.append(f.wait(timeout=60))
    assert len({answer['pid'] for answer in answers}) == 1
    assert [answer['open_at_start'] for answer in answers] == [False] * 3
    assert answers[0]['ppid'] == task_servers(django_site.directory)[0]


def test_the_package_does_not_import_django():
    import subprocess
    import sys

    code = ('import sys, coldoc_tasks, coldoc_tasks.cli, coldoc_tasks.coldoc_cli, coldoc_tasks.django_support, '
            'coldoc_tasks.django_cli, coldoc_tasks.task_utils; print("django" in sys.modules)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60,
                            cwd=pathlib.Path(__file__).parent.parent)
    assert result.stdout.strip() == 'False', result.stderr
