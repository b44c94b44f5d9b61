"""What is particular to the ``simple`` and ``nofork`` backends."""

from __future__ import annotations

import gc
import os

import pytest

from coldoc_tasks.exceptions import ColdocTasksNotSupportedError
from coldoc_tasks.simple_tasks import NoFork, SimpleFork, fork_class, nofork_class
from tests import jobs
from tests.helpers import process_exists, wait_process_gone


def test_names():
    assert fork_class is SimpleFork and fork_class.fork_type == 'simple'
    assert nofork_class is NoFork and nofork_class.fork_type == 'nofork'


def test_nofork_cannot_terminate():
    f = NoFork()
    f.run(jobs.add, 1)
    with pytest.raises(ColdocTasksNotSupportedError, match='nofork'):
        f.terminate()


def test_nofork_ignores_use_fork_and_runs_inline():
    f = NoFork(use_fork=True)
    f.run(jobs.getpid)
    assert f.wait() == os.getpid()


def test_simple_runs_a_closure_without_pickling():
    secret = object()
    f = SimpleFork()
    f.run(lambda: id(secret))
    assert f.wait(timeout=30) == id(secret)


def test_simple_handles_100_mb_results():
    size = 100 * 1024 * 1024
    f = SimpleFork()
    f.run(jobs.big_bytes, size)
    result = f.wait(timeout=120)
    assert len(result) == size and result[:1] == b'x' and result[-1:] == b'x'


def test_simple_leaves_no_zombie_after_wait():
    f = SimpleFork()
    f.run(jobs.getpid)
    pid = f.wait(timeout=30)
    assert not process_exists(pid)


def test_simple_reaps_children_of_dropped_fork_objects():
    f = SimpleFork()
    f.run(jobs.add, 1)
    pid = f._child_ref.pid
    del f
    gc.collect()
    assert wait_process_gone(pid)  # exited: a zombie until reaped
    g = SimpleFork()
    g.run(jobs.add, 2)  # run() reaps the orphans
    assert g.wait(timeout=30) == 2
    assert not process_exists(pid)


def test_simple_closes_its_descriptors():
    before = len(os.listdir('/proc/self/fd'))
    forks = [SimpleFork() for _ in range(20)]
    for f in forks:
        f.run(jobs.add, 1)
    assert len(os.listdir('/proc/self/fd')) >= before + 20
    for f in forks:
        f.wait(timeout=30)
    assert len(os.listdir('/proc/self/fd')) == before
