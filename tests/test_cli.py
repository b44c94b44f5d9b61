"""The command line, run as users run it: the installed console script."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import coldoc_tasks

CLI = str(pathlib.Path(sys.executable).with_name('coldoc_tasks_cli'))


def run_cli(*args, timeout=60):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_version():
    done = run_cli('--version')
    assert done.returncode == 0
    assert done.stdout.strip() == f'coldoc_tasks_cli {coldoc_tasks.__version__}'


def test_help():
    done = run_cli('--help')
    assert done.returncode == 0
    assert 'usage: coldoc_tasks_cli' in done.stdout


def test_no_command_is_a_usage_error():
    done = run_cli()
    assert done.returncode == 2
    assert 'usage:' in done.stderr


def test_unknown_command_is_a_usage_error():
    done = run_cli('frobnicate')
    assert done.returncode == 2
    assert 'invalid choice' in done.stderr


def test_a_reader_that_goes_away_is_no_error(coldoc_server):
    # as "coldoc_tasks_cli coldoc status INFOFILE | head -1" once head has exited
    process = subprocess.Popen([CLI, 'coldoc', 'status', coldoc_server.infofile], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # before the command has connected to the server, let alone written
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 1
    assert 'Traceback' not in stderr and 'BrokenPipe' not in stderr, stderr
