"""Every server option is checked in one place, with its range, whether it
comes from the command line, a Python function or the Django settings: a
nonsense value is refused before anything starts, naming the option."""

from __future__ import annotations

import os
import types

import pytest

from coldoc_tasks.coldoc.options import SERVER_OPTIONS, ColdocTasksOptionError, check_server_options
from coldoc_tasks.coldoc.server.main import run_server
from coldoc_tasks.coldoc_tasks import ping, tasks_daemon_start
from tests.test_cli import run_cli

BAD = [
    ('max_message_size', '-5'), ('max_message_size', '0'), ('max_message_size', '1.5'),
    ('max_message_size', str(2**40)), ('handshake_timeout', '0'), ('handshake_timeout', 'nan'),
    ('result_retention', 'inf'), ('result_retention', '-1'), ('result_retention', '0'),
    ('terminate_grace', '-0.5'), ('stop_grace', '1e12'), ('stop_grace', 'soon'),
]


def nothing_created(directory) -> bool:
    return os.listdir(directory) == []


@pytest.mark.parametrize('name, text', BAD)
def test_the_command_line_refuses_before_starting(tmp_path, name, text):
    infofile = tmp_path / 'info'
    flag = '--' + name.replace('_', '-')
    for command in ('daemon', 'start'):
        done = run_cli('coldoc', command, str(infofile), f'{flag}={text}')
        assert done.returncode == 2, done.stdout
        assert f'argument {flag}: must be ' in done.stderr and repr(text) in done.stderr, done.stderr
        assert 'started' not in done.stdout
    assert nothing_created(tmp_path)


@pytest.mark.parametrize('name, text', BAD)
def test_python_refuses_before_starting(tmp_path, name, text):
    try:
        value = float(text)
    except ValueError:
        value = text
    infofile = str(tmp_path / 'info')
    with pytest.raises(ColdocTasksOptionError, match=f'^{name} must be '):
        tasks_daemon_start(infofile, **{name: value})
    with pytest.raises(ColdocTasksOptionError, match=f'^{name} must be '):
        run_server(infofile, **{name: value})
    assert nothing_created(tmp_path)


def test_an_unknown_option_is_named(tmp_path):
    with pytest.raises(ColdocTasksOptionError, match='frobnicate'):
        tasks_daemon_start(str(tmp_path / 'info'), frobnicate=3)
    assert nothing_created(tmp_path)


def test_the_ranges_are_stated():
    for option in SERVER_OPTIONS:
        assert check_server_options({})[option.name] == option.default
        if option.kind is str:
            with pytest.raises(ColdocTasksOptionError, match=option.setting):
                option.check(3, option.setting)
            continue
        assert option.check(option.minimum) == option.minimum and option.check(option.maximum) == option.maximum
        with pytest.raises(ColdocTasksOptionError, match=option.setting):
            option.check(True, option.setting)
    with pytest.raises(ValueError, match='--handshake-timeout must be a number of seconds from 0.05 to 3600'):
        check_server_options({'handshake_timeout': 0}, spelling='flag')


def test_good_values_reach_the_server(tmp_path):
    infofile = str(tmp_path / 'info')
    pid = tasks_daemon_start(infofile, logfile=str(tmp_path / 'log'), max_message_size=4096, handshake_timeout=0.5,
                             result_retention=10, stop_grace=0, terminate_grace=0)
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as stream:
            argv = stream.read().split(b'\0')
        assert argv[argv.index(b'--max-message-size') + 1] == b'4096'
        assert argv[argv.index(b'--handshake-timeout') + 1] == b'0.5'
        assert ping(infofile)['pid'] == pid
    finally:
        assert run_cli('coldoc', 'stop', infofile).returncode == 0


def _settings(**values):
    return types.SimpleNamespace(SETTINGS_MODULE='some.settings', **values)


@pytest.mark.parametrize('name, text', BAD)
def test_django_settings_refuse_with_the_setting_named(tmp_path, name, text):
    pytest.importorskip('django')
    from coldoc_tasks import django_support

    try:
        value = float(text)
    except ValueError:
        value = text
    setting = 'COLDOC_TASKS_' + name.upper()
    with pytest.raises(django_support.ColdocTasksSettingsError, match=f'^{setting} must be '):
        django_support.read_settings(_settings(COLDOC_TASKS_INFOFILE=tmp_path / 'info', **{setting: value}))


def test_django_settings_pass_good_values_on(tmp_path):
    pytest.importorskip('django')
    from coldoc_tasks import django_support

    conf = django_support.read_settings(_settings(COLDOC_TASKS_INFOFILE=tmp_path / 'info',
                                                  COLDOC_TASKS_RESULT_RETENTION=600, COLDOC_TASKS_STOP_GRACE=1))
    assert conf.server_options == {'result_retention': 600.0, 'stop_grace': 1.0}


def test_manage_check_reports_a_bad_option(django_site):
    django_site.configure(COLDOC_TASKS_HANDSHAKE_TIMEOUT=0)
    done = django_site.manage('check', check=False)
    assert done.returncode != 0
    assert 'coldoc_tasks.E007' in done.stderr and 'COLDOC_TASKS_HANDSHAKE_TIMEOUT must be' in done.stderr


def test_django_daemon_refuses_a_bad_option(django_site):
    django_site.configure()
    done = django_site.cli('coldoc', 'django_daemon', '--settings', 'site_settings', '--max-message-size', '-5')
    assert done.returncode == 2 and 'argument --max-message-size: must be an integer from 1024' in done.stderr
    assert not os.path.exists(django_site.infofile)
