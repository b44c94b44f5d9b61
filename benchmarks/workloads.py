"""The workloads, each a function of an adapter and the run's parameters
that returns a JSON-able dict.  Every task goes through ``submit`` then
``collect``; values are checked, so a fast wrong answer cannot win."""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from typing import Any

from .adapters import Adapter
from .memory import tree_memory
from .stats import latency_summary, percentile, summary

#: Parameters of a full run and of ``--quick``.
FULL = {
    'w1_n': 300, 'warmup': 20, 'w2_n': 1000, 'w2_reps': 3, 'w3_n': 40, 'w3_ms': 25.0, 'w3_reps': 3,
    'w4_n': 10_000, 'w5_n': 30, 'w5_timeout': 10.0, 'w6_reps': 7,
    'queued': [100, 1000, 10_000, 100_000], 'clients': [1, 4, 16, 64], 'clients_tasks': 1280,
    'scale_budget': 45.0, 'timeout': 60.0,
}
QUICK = {
    'w1_n': 50, 'warmup': 5, 'w2_n': 100, 'w2_reps': 3, 'w3_n': 20, 'w3_ms': 25.0, 'w3_reps': 1,
    'w4_n': 500, 'w5_n': 5, 'w5_timeout': 1.0, 'w6_reps': 2,
    'queued': [100, 1000], 'clients': [1, 4], 'clients_tasks': 200,
    'scale_budget': 5.0, 'timeout': 30.0,
}
CORES = 2


def round_trip(adapter: Adapter, value: Any, timeout: float) -> float:
    """One trivial task, submitted then collected; its duration in seconds."""
    start = time.perf_counter()
    result = adapter.collect(adapter.submit('noop', value), timeout)
    elapsed = time.perf_counter() - start
    if result != value:
        raise AssertionError(f'{adapter.name}: noop({value!r}) returned {result!r}')
    return elapsed


def w1_latency(adapter: Adapter, p: dict) -> dict:
    """W1: sequential round trips of a trivial task."""
    for i in range(p['warmup']):
        round_trip(adapter, i, p['timeout'])
    return latency_summary([round_trip(adapter, i, p['timeout']) for i in range(p['w1_n'])])


def submit_then_collect(adapter: Adapter, n: int, timeout: float) -> tuple[float, list[float]]:
    """Submit ``n`` trivial tasks, then collect them all: (wall seconds,
    duration of each submit)."""
    submits = []
    start = time.perf_counter()
    handles = []
    for i in range(n):
        before = time.perf_counter()
        handles.append(adapter.submit('noop', i))
        submits.append(time.perf_counter() - before)
    for i, handle in enumerate(handles):
        value = adapter.collect(handle, timeout)
        if value != i:
            raise AssertionError(f'{adapter.name}: task {i} returned {value!r}')
    return time.perf_counter() - start, submits


def w2_throughput(adapter: Adapter, p: dict) -> dict:
    """W2: ``w2_n`` trivial tasks submitted, then all collected; tasks/s."""
    n = max(10, int(p['w2_n'] * adapter.w2_fraction))
    rates = []
    for _ in range(p['w2_reps']):
        wall, _ = submit_then_collect(adapter, n, p['timeout'])
        rates.append(n / wall)
    return {'tasks': n, 'rate': summary(rates)}


def w3_parallel_cpu(adapter: Adapter, p: dict) -> dict:
    """W3: ``w3_n`` tasks of ``w3_ms`` ms CPU on 2 cores: wall time and
    efficiency against the ideal (all CPU time spread over the cores)."""
    n, ms = p['w3_n'], p['w3_ms']
    adapter.collect(adapter.submit('burn', 1.0), p['timeout'])
    walls, cpus = [], []
    for _ in range(p['w3_reps']):
        start = time.perf_counter()
        handles = [adapter.submit('burn', ms) for _ in range(n)]
        cpu = sum(adapter.collect(handle, p['timeout']) for handle in handles)
        walls.append(time.perf_counter() - start)
        cpus.append(cpu)
    ideal = n * ms / 1000.0 / CORES
    return {'tasks': n, 'ms': ms, 'ideal_s': ideal, 'wall_s': summary(walls),
            'efficiency': summary([ideal / wall for wall in walls]), 'task_cpu_s': summary(cpus)}


def _memory(adapter: Adapter) -> dict:
    gc.collect()
    tree = tree_memory(adapter.server_pids())
    client = tree_memory([os.getpid()]) if os.getpid() not in adapter.server_pids() else {'rss': 0, 'pss': 0}
    return {'rss': tree['rss'], 'pss': tree['pss'], 'processes': tree['processes'], 'outside': adapter.outside_memory(),
            'client_pss': client['pss']}


def w4_memory(adapter: Adapter, p: dict) -> dict:
    """W4: idle RSS/PSS of the server tree (plus Redis keys, for the Redis
    systems), and the growth with ``w4_n`` results finished and not yet
    collected, per pending result: on the server side (tree and Redis) and
    in all (with the client process, which holds the handles and, for some
    systems, the results)."""
    if adapter.memory_unsupported:
        return {'skipped': adapter.memory_unsupported}
    n = max(10, int(p['w4_n'] * adapter.w4_fraction))
    time.sleep(0.5)  # let the server settle after its start
    idle = _memory(adapter)
    handles = [adapter.submit('noop', i) for i in range(n)]
    adapter.wait_stored(handles, p['timeout'] * 3)
    loaded = _memory(adapter)
    for i, handle in enumerate(handles):
        if adapter.collect(handle, p['timeout']) != i:
            raise AssertionError(f'{adapter.name}: task {i} returned a wrong value')
    server = (loaded['pss'] + loaded['outside']) - (idle['pss'] + idle['outside'])
    total = server + loaded['client_pss'] - idle['client_pss']
    return {'pending': n, 'idle': idle, 'loaded': loaded, 'server_bytes_per_pending': server / n,
            'total_bytes_per_pending': total / n}


def w5_nested(adapter: Adapter, p: dict) -> dict:
    """W5: a task that runs a child task and waits for it (p50), then
    whether a chain of depth 3 completes (on 2 workers)."""
    if adapter.nested_unsupported:
        return {'skipped': adapter.nested_unsupported}
    timeout = p['w5_timeout']
    latencies = []
    for i in range(p['warmup'] // 4 + p['w5_n']):
        start = time.perf_counter()
        value = adapter.collect(adapter.submit('nested', 1, timeout), timeout)
        if value != 1:
            raise AssertionError(f'{adapter.name}: nested(1) returned {value!r}')
        if i >= p['warmup'] // 4:
            latencies.append(time.perf_counter() - start)
    result: dict[str, Any] = {'depth1': latency_summary(latencies)}
    start = time.perf_counter()
    try:
        value = adapter.collect(adapter.submit('nested', 3, timeout), timeout * 2)
        result['depth3'] = {'ok': value == 3, 'seconds': time.perf_counter() - start}
    except Exception as exc:  # a deadlock is this workload's answer, not a failure of the run
        result['depth3'] = {'ok': False, 'seconds': time.perf_counter() - start,
                            'error': f'{type(exc).__name__}: {str(exc)[:160]}'}
    return result


def w6_parallel_chains(adapter: Adapter, p: dict) -> dict:
    """W6: two 5-level nested chains at once, on this system's 2 workers and
    on a sibling server of 10 (which never has to lend a slot), alternated
    ``w6_reps`` times; wall seconds of each, and the ratio of the medians."""
    sibling = getattr(adapter, 'sibling', None)
    if sibling is None:
        return {'skipped': 'only the coldoc servers can be started with another concurrency'}
    timeout = p['w5_timeout']
    workdir = os.path.join(adapter.workdir, 'c10')
    os.mkdir(workdir)
    wide = sibling(workdir, 10)
    try:
        walls: dict[str, list[float]] = {'c2': [], 'c10': []}
        for rep in range(p['w6_reps'] + 1):
            for key, system in (('c2', adapter), ('c10', wide)):
                start = time.perf_counter()
                handles = [system.submit('nested', 5, timeout) for _ in range(2)]
                values = [system.collect(handle, timeout * 5) for handle in handles]
                if values != [5, 5]:
                    raise AssertionError(f'{adapter.name}: two nested(5) returned {values!r}')
                if rep:  # the first pass makes the workers the chains need
                    walls[key].append(time.perf_counter() - start)
    finally:
        wide.stop()
    c2, c10 = summary(walls['c2']), summary(walls['c10'])
    return {'c2_s': c2, 'c10_s': c10, 'ratio': c2['median'] / c10['median']}


def scale_queued(adapter: Adapter, p: dict) -> dict:
    """Throughput and p99 submit time as the number of queued tasks grows;
    a size whose projected time exceeds ``scale_budget`` is skipped."""
    points = []
    rate = None
    for n in p['queued']:
        if rate is not None and n / rate > p['scale_budget']:
            points.append({'tasks': n, 'skipped': f'projected {n / rate:.0f} s > budget {p["scale_budget"]:g} s'})
            continue
        wall, submits = submit_then_collect(adapter, n, max(p['timeout'], n / 500))
        rate = n / wall
        points.append({'tasks': n, 'rate': rate, 'wall_s': wall, 'submit_p99_ms': percentile(submits, 99) * 1000,
                       'submit_p50_ms': percentile(submits, 50) * 1000})
        gc.collect()
    return {'points': points}


def _client_loop(adapter: Adapter, count: int, timeout: float, offset: int) -> list[float]:
    return [round_trip(adapter, offset + i, timeout) for i in range(count)]


def _process_client(adapter: Adapter, count: int, timeout: float, offset: int, gate, conn) -> None:
    try:
        adapter.after_fork()
        round_trip(adapter, -1, timeout)  # the client's own connection, made before the clock starts
        conn.send('ready')
        gate.wait(timeout)
        conn.send(_client_loop(adapter, count, timeout, offset))
    except BaseException as exc:
        conn.send(f'error: {exc!r}')
    finally:
        conn.close()
        os._exit(0)


def _run_clients(adapter: Adapter, clients: int, count: int, timeout: float) -> tuple[float, list[float]]:
    if adapter.clients == 'thread':
        results: list[list[float]] = [[] for _ in range(clients)]
        gate = threading.Event()

        def body(k: int) -> None:
            gate.wait(timeout)
            results[k] = _client_loop(adapter, count, timeout, k * count)

        threads = [threading.Thread(target=body, args=(k,)) for k in range(clients)]
        for thread in threads:
            thread.start()
        start = time.perf_counter()
        gate.set()
        for thread in threads:
            thread.join(timeout * count)
        return time.perf_counter() - start, [x for r in results for x in r]
    context = multiprocessing.get_context('fork')
    gate = context.Event()
    processes, pipes = [], []
    try:
        for k in range(clients):
            parent_end, child_end = context.Pipe(duplex=False)
            process = context.Process(target=_process_client,
                                      args=(adapter, count, timeout, k * count, gate, child_end), daemon=True)
            process.start()
            child_end.close()
            processes.append(process)
            pipes.append(parent_end)
        for pipe in pipes:
            if not pipe.poll(timeout) or pipe.recv() != 'ready':
                raise RuntimeError(f'{adapter.name}: a client did not get ready')
        start = time.perf_counter()
        gate.set()
        latencies = []
        for pipe in pipes:
            if not pipe.poll(timeout * 4):
                raise TimeoutError(f'{adapter.name}: a client did not finish')
            got = pipe.recv()
            if isinstance(got, str):
                raise RuntimeError(f'{adapter.name}: client failed: {got}')
            latencies += got
        return time.perf_counter() - start, latencies
    finally:
        for process in processes:
            process.join(2)
            if process.is_alive():
                process.kill()
                process.join(2)


def scale_clients(adapter: Adapter, p: dict) -> dict:
    """Throughput and p99 round trip as concurrent clients grow, each
    client doing sequential round trips (``clients_tasks`` in all)."""
    points = []
    for clients in p['clients']:
        count = max(10, p['clients_tasks'] // clients)
        wall, latencies = _run_clients(adapter, clients, count, p['timeout'])
        points.append({'clients': clients, 'tasks': len(latencies), 'rate': len(latencies) / wall,
                       **latency_summary(latencies)})
    return {'points': points, 'clients_are': adapter.clients + 'es' if adapter.clients == 'process' else 'threads'}


#: Workload groups: each group runs in one fresh process per system.
GROUPS = {
    'core': [('W1', w1_latency), ('W2', w2_throughput), ('W3', w3_parallel_cpu), ('W5', w5_nested),
             ('W6', w6_parallel_chains)],
    'memory': [('W4', w4_memory)],
    'scale': [('queued', scale_queued), ('clients', scale_clients)],
}
# a quick run saves a server start per system: memory right after the core group
GROUPS['quick'] = GROUPS['core'] + GROUPS['memory']
