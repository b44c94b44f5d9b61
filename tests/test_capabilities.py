"""The capability flags of the fork classes: declared in one place, and true.

The contract suite (test_contract.py) reads the flags to decide what to
expect of each backend, so a wrong flag fails it there too; here each flag
of the backends that need no server is checked against what the class does.
"""

from __future__ import annotations

import functools
import os
import pickle
import threading
import typing

import pytest

from coldoc_tasks.base import CAPABILITIES, ForkBase
from coldoc_tasks.coldoc.fork import ColdocFork, bind_fork_class
from coldoc_tasks.exceptions import (
    ColdocTasksException,
    ColdocTasksNotSupportedError,
    ColdocTasksProcessLookupError,
    ColdocTasksUsageError,
)
from coldoc_tasks.simple_tasks import NoFork, SimpleFork
from tests import jobs
from tests.conftest import Backend, fork_class_of


def package_fork_classes() -> list[type[ForkBase]]:
    classes = [NoFork, SimpleFork, ColdocFork, bind_fork_class('/nonexistent/infofile')]
    try:
        from coldoc_tasks.celery.fork import CeleryFork, fork_class_for
    except ImportError:  # celery is an optional extra
        return classes
    return [*classes, CeleryFork, fork_class_for('/nonexistent/celeryconfig.py')]


def test_each_capability_is_a_documented_class_flag():
    hints = typing.get_type_hints(ForkBase)
    for name in CAPABILITIES:
        assert hints[name] == typing.ClassVar[bool], name
        assert f'{name}:' in ForkBase.__doc__, f'{name} is not documented in ForkBase'


@pytest.mark.parametrize('cls', package_fork_classes(), ids=lambda cls: f'{cls.fork_type}-{cls.__module__}')
def test_every_fork_class_declares_every_capability(cls):
    flags = cls.capabilities()
    assert set(flags) == set(CAPABILITIES)
    assert all(type(value) is bool for value in flags.values()), flags
    assert cls.can_fork() is not cls.runs_inline
    assert cls.nested_waits, 'the contract promises nested waits on every backend'


def test_contract_suite_finds_the_class_behind_make():
    bound = bind_fork_class('/nonexistent/infofile')
    assert Backend('coldoc', functools.partial(functools.partial(bound, queue='q'), timeout=5)).fork_class is bound
    assert Backend('nofork', NoFork).fork_class is NoFork
    with pytest.raises(TypeError, match='neither a fork class'):
        fork_class_of(jobs.add)


def test_nofork_runs_inline_and_cannot_terminate():
    assert NoFork.runs_inline and not NoFork.can_fork() and not NoFork.can_terminate
    f = NoFork(use_fork=True)
    f.run(jobs.getpid)
    assert f.wait() == os.getpid()
    with pytest.raises(ColdocTasksNotSupportedError, match='nofork'):
        f.terminate()


def test_nofork_does_not_pickle_arguments():
    assert not NoFork.pickles_arguments
    lock = threading.Lock()
    f = NoFork()
    f.run(jobs.identity, lock)
    assert f.wait() is lock


def test_simple_runs_in_a_child_that_terminate_stops():
    assert not SimpleFork.runs_inline and SimpleFork.can_terminate
    f = SimpleFork()
    f.run(jobs.getpid)
    assert f.wait(timeout=30) != os.getpid()
    r, w = os.pipe()
    try:
        g = SimpleFork()
        g.run(os.read, r, 1)  # blocks until terminated: nothing is ever written
        g.terminate()
        with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
            g.wait(timeout=30)
    finally:
        os.close(r)
        os.close(w)


def test_simple_does_not_pickle_arguments():
    assert not SimpleFork.pickles_arguments
    f = SimpleFork()
    f.run(_type_name, threading.Lock())  # reaches the child through fork()
    assert f.wait(timeout=30) == 'lock'


def test_simple_copy_cannot_wait_in_another_process():
    assert not SimpleFork.shared_wait
    f = SimpleFork()
    f.run(jobs.add, 1, 2)
    other = SimpleFork()
    other.run(_wait_pickled, pickle.dumps(f))
    error = other.wait(timeout=60)
    assert isinstance(error, ColdocTasksUsageError), error
    assert 'only from the process that ran it' in str(error)
    assert f.wait(timeout=30) == 3


@pytest.mark.parametrize('cls', [NoFork, SimpleFork], ids=lambda cls: cls.fork_type)
def test_nested_waits(cls):
    assert cls.nested_waits
    f = cls()
    f.run(jobs.nested, cls, 3)
    assert f.wait(timeout=60) == [1, 2, 3]


def _type_name(value):
    return type(value).__name__


def _wait_pickled(data):
    try:
        return pickle.loads(data).wait(timeout=30)
    except ColdocTasksException as exc:
        return exc
