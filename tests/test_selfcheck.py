"""The self-check (``coldoc_tasks_cli ... test``) checks with real conditions,
so that it still finds a broken backend under ``python -O``, which strips
``assert`` statements."""

from __future__ import annotations

import pathlib
import subprocess
import sys

from coldoc_tasks.exceptions import ColdocTasksException, SelfCheckError, SelfCheckFailure
from coldoc_tasks.simple_tasks import SimpleFork

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: The checks that a :class:`LyingFork` fails.
LIES_FOUND = {
    'a value comes back',
    'an exception is re-raised with its traceback',
    'a timeout, then the value',
    'an unpicklable argument is refused or not pickled',
    'nested tasks, depth 3',
    'a pickled fork object can wait',
    '100 tasks in flight',
}


class LyingFork(SimpleFork):
    """A broken backend: every value comes back wrapped, and the self-check's
    own exception comes back with other arguments."""

    def wait(self, timeout=None, raise_exception=True):
        try:
            value = super().wait(timeout, raise_exception)
        except SelfCheckError:
            raise SelfCheckError('not what the task said') from None
        return ('wrong', value)


def run_selfcheck_optimized(fork_class: str) -> subprocess.CompletedProcess:
    """Run the self-check with ``fork_class`` (module:name) under ``python -O``;
    its exit status is the number of failures."""
    module, name = fork_class.split(':')
    code = ('import importlib, sys\n'
            'from coldoc_tasks.selfcheck import run_checks\n'
            'print("optimize", sys.flags.optimize)\n'
            f'sys.exit(run_checks(getattr(importlib.import_module({module!r}), {name!r})))\n')
    return subprocess.run([sys.executable, '-O', '-c', code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def check_lines(stdout: str, prefix: str) -> set[str]:
    return {line[len(prefix):].split(':')[0].split(' (')[0] for line in stdout.splitlines()
            if line.startswith(prefix)}


def test_selfcheck_failure_is_ours():
    assert issubclass(SelfCheckFailure, ColdocTasksException)


def test_selfcheck_finds_a_lying_backend_under_python_O():
    done = run_selfcheck_optimized('tests.test_selfcheck:LyingFork')
    assert 'optimize 1' in done.stdout, done.stdout + done.stderr
    assert check_lines(done.stdout, 'FAIL  ') == LIES_FOUND, done.stdout
    assert check_lines(done.stdout, 'ok    ') == {'a vanished process is reported', 'terminate'}, done.stdout
    assert f'{len(LIES_FOUND)} failure(s)' in done.stdout
    assert done.returncode == len(LIES_FOUND), done.stdout + done.stderr
    assert "SelfCheckFailure(\"wrong value: ('wrong', {'answer': 42}) instead of {'answer': 42}\")" in done.stdout
    assert "SelfCheckFailure(\"wrong args: ('not what the task said',)\")" in done.stdout


def test_selfcheck_passes_on_simple_under_python_O():
    done = run_selfcheck_optimized('coldoc_tasks.simple_tasks:SimpleFork')
    assert 'optimize 1' in done.stdout, done.stdout + done.stderr
    assert 'FAIL' not in done.stdout and '0 failure(s)' in done.stdout, done.stdout + done.stderr
    assert len(check_lines(done.stdout, 'ok    ')) == len(LIES_FOUND) + 2
    assert done.returncode == 0
