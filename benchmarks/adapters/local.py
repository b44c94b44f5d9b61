"""Systems that need no server: ours (``nofork``, ``simple``), and the
peers ``concurrent.futures.ProcessPoolExecutor(2)`` and a bare
``os.fork()`` + pipe per task (the fork floor)."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import select
import struct
import sys
import time
from typing import Any

from .. import bench_tasks
from .base import Adapter

_TASKS = {'noop': bench_tasks.noop, 'burn': bench_tasks.burn, 'progress_loop': bench_tasks.progress_loop}


class ForkClassAdapter(Adapter):
    """Any coldoc_tasks fork class: ``run`` then ``wait``."""

    kind = 'ours'
    fork_class: Any = None

    def submit(self, task: str, *args: Any) -> Any:
        fork = self.fork_class()
        if task == 'nested':  # ours wait for a child as documented: wait() with no timeout
            fork.run(bench_tasks.nested_fork, self.fork_class, args[0], None)
        else:
            fork.run(_TASKS[task], *args)
        return fork

    def collect(self, handle: Any, timeout: float) -> Any:
        return handle.wait(timeout=timeout)

    def versions(self) -> dict[str, str]:
        import coldoc_tasks

        return {'coldoc_tasks': coldoc_tasks.__version__}


class NoForkAdapter(ForkClassAdapter):
    name, label = 'nofork', 'coldoc_tasks nofork (inline)'
    memory_unsupported = 'runs inline: nothing is pending'

    def start(self, workdir: str) -> None:
        from coldoc_tasks.simple_tasks import NoFork

        self.fork_class = NoFork


class SimpleAdapter(ForkClassAdapter):
    name, label = 'simple', 'coldoc_tasks simple (fork per task)'
    memory_unsupported = 'a pending result is an exited child and its pipe, like the bare fork'

    def start(self, workdir: str) -> None:
        from coldoc_tasks.simple_tasks import SimpleFork

        self.fork_class = SimpleFork


class PoolExecutorAdapter(Adapter):
    """``ProcessPoolExecutor(2)``: the in-process near-limit."""

    name, label = 'ppe', 'ProcessPoolExecutor(2)'
    clients = 'thread'
    nested_unsupported = 'a worker cannot submit to the executor of the process that owns it'

    def start(self, workdir: str) -> None:
        self.method = multiprocessing.get_start_method()
        self.executor = concurrent.futures.ProcessPoolExecutor(2)
        # start both workers now, as a server would have them running
        for future in [self.executor.submit(bench_tasks.noop, i) for i in range(4)]:
            future.result(timeout=30)

    def stop(self) -> None:
        executor = getattr(self, 'executor', None)
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, task: str, *args: Any) -> Any:
        return self.executor.submit(_TASKS[task], *args)

    def collect(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout=timeout)

    def server_pids(self) -> list[int]:
        # the workers; the results wait in this (the client) process
        return list(self.executor._processes)

    def stored_results(self, handles: list) -> int:
        return sum(1 for future in handles if future.done())

    def wait_stored(self, handles: list, timeout: float) -> None:
        concurrent.futures.wait(handles, timeout=timeout)

    def versions(self) -> dict[str, str]:
        return {'python': sys.version.split()[0], 'start method': self.method}


# -- the fork floor -------------------------------------------------------------

_LENGTH = struct.Struct('!Q')


def barefork_submit(fn, *args) -> tuple[int, int]:
    """Fork a child that runs ``fn(*args)`` and writes its pickled value to
    a pipe; return ``(pid, read fd)``.  No process groups, no error
    capture, no pidfd: the least a fork per task can do."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            data = pickle.dumps(fn(*args), pickle.HIGHEST_PROTOCOL)
            view = memoryview(_LENGTH.pack(len(data)) + data)
            while view:
                view = view[os.write(write_fd, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    return pid, read_fd


def barefork_collect(handle: tuple[int, int], timeout: float) -> Any:
    """Read the child's value until end of file, and reap it."""
    pid, fd = handle
    deadline = time.monotonic() + timeout
    chunks = []
    try:
        while True:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError(f'bare fork child {pid} did not answer within {timeout} s')
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    data = b''.join(chunks)
    if len(data) < _LENGTH.size:
        raise RuntimeError(f'bare fork child {pid} failed')
    return pickle.loads(data[_LENGTH.size:])


class BareForkAdapter(Adapter):
    """A bare ``os.fork()`` and a pipe per task: the floor of fork-per-task."""

    name, label = 'barefork', 'bare os.fork() + pipe'
    memory_unsupported = 'a pending result is an exited child (a zombie) and its pipe'

    def submit(self, task: str, *args: Any) -> Any:
        if task == 'nested':
            return barefork_submit(bench_tasks.nested_barefork, *args)
        return barefork_submit(_TASKS[task], *args)

    def collect(self, handle: Any, timeout: float) -> Any:
        return barefork_collect(handle, timeout)

    def versions(self) -> dict[str, str]:
        return {'python': sys.version.split()[0]}


LOCAL = {'nofork': NoForkAdapter, 'simple': SimpleAdapter, 'ppe': PoolExecutorAdapter, 'barefork': BareForkAdapter}
