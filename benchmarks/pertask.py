"""Where a trivial task's round trip goes: the CPU time each process spends
on it, and the time it waits to be run, from the scheduler's own accounts.

Linux keeps, for every thread, the nanoseconds it ran on a CPU and the
nanoseconds it waited on a run queue (``/proc/PID/task/TID/schedstat``).
Read before and after N sequential round trips, and divided by N, they say
what one round trip costs in the client (the caller and, for coldoc, its
connection's reader thread), in the coldoc server, and in the workers; the
rest of the wall time is spent handing over between processes (a wake-up
and a context switch at each hop).  The same for ProcessPoolExecutor(2),
whose client process holds its queue-feeding and result threads.

``python -m benchmarks.pertask [N]`` prints both; a full ``make bench``
puts them in the report.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from .adapters.base import Adapter
from .adapters.coldoc import ColdocAdapter
from .adapters.local import PoolExecutorAdapter
from .workloads import round_trip

ROUND_TRIPS = 3000


def _threads(pid: int) -> list[str]:
    try:
        return [f'/proc/{pid}/task/{tid}/schedstat' for tid in os.listdir(f'/proc/{pid}/task')]
    except FileNotFoundError:
        return []


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for path in _threads(pid):
        try:
            with open(path.replace('schedstat', 'children')) as stream:
                children += [int(child) for child in stream.read().split()]
        except FileNotFoundError:
            pass
    return children


def schedstat(pids: list[int]) -> tuple[int, int]:
    """(ns on a CPU, ns waiting on a run queue), summed over every thread of ``pids``."""
    running = waiting = 0
    for pid in pids:
        for path in _threads(pid):
            try:
                with open(path) as stream:
                    fields = stream.read().split()
            except FileNotFoundError:  # a thread that just ended
                continue
            running += int(fields[0])
            waiting += int(fields[1])
    return running, waiting


def breakdown(adapter: Adapter, groups: dict[str, list[int]], n: int) -> dict:
    """Per round trip, in µs: the wall time, and (on CPU, waiting to run) for each group of pids."""
    for i in range(200):  # the workers exist, the caches are warm
        round_trip(adapter, i, 30)
    before = {name: schedstat(pids) for name, pids in groups.items()}
    start = time.perf_counter()
    for i in range(n):
        round_trip(adapter, i, 30)
    wall = time.perf_counter() - start
    after = {name: schedstat(pids) for name, pids in groups.items()}
    per_task = {name: ((after[name][0] - before[name][0]) / n / 1000, (after[name][1] - before[name][1]) / n / 1000)
                for name in groups}
    return {'wall_us': wall / n * 1e6, 'groups': per_task}


def _lines(title: str, result: dict) -> list[str]:
    wall = result['wall_us']
    lines = [f'{title}: {wall:.0f} µs per round trip (wall)']
    on_cpu = 0.0
    for name, (running, waiting) in result['groups'].items():
        on_cpu += running
        lines.append(f'  {name:<34} {running:7.1f} µs on a CPU   {waiting:7.1f} µs waiting to run')
    lines.append(f'  {"wall - all CPU (hand-overs)":<34} {wall - on_cpu:7.1f} µs')
    return lines


def measure(n: int = ROUND_TRIPS) -> list[str]:
    """The breakdown of coldoc with reused workers, then of ProcessPoolExecutor(2)."""
    lines: list[str] = []
    me = os.getpid()
    workdir = tempfile.mkdtemp(prefix='bench-pertask-')
    coldoc = ColdocAdapter('reuse')
    try:
        coldoc.start(workdir)
        groups = {'client (caller and reader thread)': [me], 'coldoc server': [coldoc.pid],
                  'workers': _children(coldoc.pid)}
        lines += _lines('coldoc, reused workers', breakdown(coldoc, groups, n))
    finally:
        coldoc.stop()
    pool = PoolExecutorAdapter()
    try:
        pool.start(workdir)
        groups = {'client (caller and pool threads)': [me], 'workers': list(pool.executor._processes)}
        lines += _lines('ProcessPoolExecutor(2)', breakdown(pool, groups, n))
    finally:
        pool.stop()
    return lines


if __name__ == '__main__':
    print('\n'.join(measure(int(sys.argv[1]) if len(sys.argv) > 1 else ROUND_TRIPS)))
