"""What the commands say when something is wrong: one clear line each, in
the style of the rest of the command line; no log lines, no stacked errors."""

from __future__ import annotations

import re
import time

import pytest

from coldoc_tasks.coldoc_tasks import bind_fork_class
from coldoc_tasks.exceptions import ColdocTasksTimeoutError
from coldoc_tasks.simple_tasks import SimpleFork
from tests.test_cli import run_cli
from tests.test_compat_django import coldoc_shaped_site  # noqa: F401 - a fixture


def test_daemon_over_a_running_server_says_so_in_one_line(coldoc_server):
    for extra in ([], ['--logfile', coldoc_server.logfile]):
        done = run_cli('coldoc', 'daemon', coldoc_server.infofile, *extra)
        assert done.returncode == 1
        assert done.stderr == (f'coldoc_tasks_cli: a coldoc task server is already running (pid {coldoc_server.pid}) '
                               f'for {coldoc_server.infofile}\n'), done.stderr


def test_manage_py_status_without_a_server_is_one_line(coldoc_shaped_site):  # noqa: F811
    done = coldoc_shaped_site.manage('coldoc_tasks', 'status')
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f'coldoc_tasks_cli: no answer from the task server of {coldoc_shaped_site.infofile}: ')
    assert 'CommandError' not in done.stderr and 'Traceback' not in done.stderr


def test_manage_py_daemon_says_started_once(coldoc_shaped_site):  # noqa: F811
    done = coldoc_shaped_site.manage('coldoc_tasks', 'daemon')
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert len(re.findall('started', said)) == 1, said
    again = coldoc_shaped_site.manage('coldoc_tasks', 'daemon')
    assert again.returncode == 1
    assert again.stderr.count('\n') == 1 and 'already running' in again.stderr, again.stderr
    assert 'last lines of the log' not in again.stderr


@pytest.mark.parametrize('kind', ['simple', 'coldoc'])
def test_a_timeout_is_said_as_it_was_given(kind, coldoc_server):
    make = SimpleFork if kind == 'simple' else bind_fork_class(coldoc_server.infofile)
    f = make()
    f.run(time.sleep, 5)
    with pytest.raises(ColdocTasksTimeoutError) as raised:
        f.wait(timeout=0.3)
    assert str(raised.value).endswith('did not finish within 0.3 s'), str(raised.value)
    f.terminate()
