"""The Markdown report: targets, the rounds with their load and the ratios
computed within each round (median over the rounds, min–max), tables with
medians and ranges, scale tables, versions and notes."""

from __future__ import annotations

import math
import os

from . import rounds as rounds_
from .adapters import SYSTEMS

LABELS = {
    'coldoc-reuse': 'coldoc, reused workers', 'coldoc-fresh': 'coldoc, fresh process per task',
    'nofork': 'nofork (inline)', 'simple': 'simple (fork per task)', 'celery': 'celery backend (ours)',
    'ppe': 'ProcessPoolExecutor(2)', 'barefork': 'bare os.fork() + pipe', 'celery-peer': 'Celery 5 + Redis',
    'rq': 'RQ + Redis', 'huey': 'huey + Redis',
    'coldoc-journal': 'coldoc, reused, journal synced every batch',
    'coldoc-journal-second': 'coldoc, reused, journal synced every second',
}


class Run:
    """Lookup of one run's results by system and workload."""

    def __init__(self, results: dict):
        self.results = results
        self.by = {(r['system'], r.get('group')): r for r in results['runs']}
        # a run from before the rounds is one round of its own, without loads
        self.rounds = results.get('rounds') or [
            {'round': 1, 'runs': [r for r in results['runs'] if r.get('group') in ('core', 'quick')]}]
        self.ratios = {r['key']: r for r in results.get('ratios') or rounds_.summarise(self.rounds)}

    def over_rounds(self, numerator: str, denominator: str, workload: str, *path: str) -> dict | None:
        """``numerator`` over ``denominator`` within each round, summarised over the rounds."""
        return rounds_.ratio_over_rounds(self.rounds, numerator, denominator, workload, *path)

    def workload(self, system: str, name: str) -> dict | None:
        group = {'W1': 'core', 'W2': 'core', 'W3': 'core', 'W5': 'core', 'W6': 'core', 'W4': 'memory',
                 'queued': 'scale', 'clients': 'scale'}[name]
        run = self.by.get((system, group)) or self.by.get((system, 'quick'))
        if not run:
            return None
        data = run.get('workloads', {}).get(name)
        return data if data and 'error' not in data and 'skipped' not in data else None

    def value(self, system: str, name: str, *path: str) -> float | None:
        data = self.workload(system, name)
        for key in path:
            if not isinstance(data, dict) or key not in data:
                return None
            data = data[key]
        return data if isinstance(data, (int, float)) else None

    def systems(self) -> list[str]:
        seen = {r['system'] for r in self.results['runs']}
        return [name for name in SYSTEMS if name in seen]


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    if abs(value) >= 100:
        return f'{value:,.0f}'
    return f'{value:.{digits}f}'


def ratio(a: float | None, b: float | None) -> str:
    return 'n/a' if a is None or b is None or b == 0 else f'{a / b:.2f}x'


def spread_ratio(data: dict | None) -> str:
    """A ratio over rounds: its median, then [min–max] when there was more than one round."""
    if not data or 'median' not in data:
        return 'n/a'
    if data['n'] == 1:
        return f'{data["median"]:.2f}x'
    return f'{data["median"]:.2f}x [{data["min"]:.2f}–{data["max"]:.2f}]'


def mb(value: float | None) -> str:
    return 'n/a' if value is None else f'{value / 2**20:.1f}'


def targets(run: Run) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of issues 3, 6 and 15."""
    w1 = run.value('coldoc-reuse', 'W1', 'p50_ms')
    w1_ppe = run.value('ppe', 'W1', 'p50_ms')
    w1_fresh = run.value('coldoc-fresh', 'W1', 'p50_ms')
    w1_fork = run.value('barefork', 'W1', 'p50_ms')
    w2 = run.value('coldoc-reuse', 'W2', 'rate', 'median')
    w2_ppe = run.value('ppe', 'W2', 'rate', 'median')
    w2_huey = run.value('huey', 'W2', 'rate', 'median')
    w2_celery = run.value('celery-peer', 'W2', 'rate', 'median')
    w3 = run.value('coldoc-reuse', 'W3', 'efficiency', 'median')
    w4 = run.value('coldoc-reuse', 'W4', 'server_bytes_per_pending')
    w4_total = run.value('coldoc-reuse', 'W4', 'total_bytes_per_pending')
    queued = {p['tasks']: p.get('rate') for p in (run.workload('coldoc-reuse', 'queued') or {}).get('points', [])}
    big, small = queued.get(100_000), queued.get(1000)

    def check(value, bound, kind):
        if value is None or bound is None:
            return None
        return value <= bound if kind == 'max' else value >= bound

    def median(key):
        return (run.ratios.get(key) or {}).get('median')

    def over(key):
        return spread_ratio(run.ratios.get(key))

    def times(a, b):
        return None if a is None or b is None else a * b

    w2_ours_celery = run.value('celery', 'W2', 'rate', 'median')
    return [
        ('reuse: W1 p50 <= 1.0x ProcessPoolExecutor (issue 15)',
         f'{fmt(w1, 3)} ms vs {fmt(w1_ppe, 3)} ms; {over("reuse_w1_ppe")}', check(median('reuse_w1_ppe'), 1.0, 'max')),
        ('reuse: W1 p50 <= 0.5 ms', f'{fmt(w1, 3)} ms', check(w1, 0.5, 'max')),
        ('reuse: W2 >= 1.5x ProcessPoolExecutor (issue 15)',
         f'{fmt(w2)} vs {fmt(w2_ppe)} tasks/s; {over("reuse_w2_ppe")}', check(median('reuse_w2_ppe'), 1.5, 'min')),
        ('reuse: W2 >= 3x huey', f'{fmt(w2)} vs {fmt(w2_huey)} tasks/s; {over("reuse_w2_huey")}',
         check(median('reuse_w2_huey'), 3, 'min')),
        ('reuse: W2 >= 8x Celery', f'{fmt(w2)} vs {fmt(w2_celery)} tasks/s; {over("reuse_w2_celery")}',
         check(median('reuse_w2_celery'), 8, 'min')),
        ('reuse: W2 >= 5,000 tasks/s (issue 3)', f'{fmt(w2)} tasks/s', check(w2, 5000, 'min')),
        ('reuse: W3 efficiency >= 90 %', 'n/a' if w3 is None else f'{w3 * 100:.1f} %', check(w3, 0.9, 'min')),
        ('fresh: W1 p50 <= 1.2x bare fork (issue 15)',
         f'{fmt(w1_fresh, 3)} ms vs {fmt(w1_fork, 3)} ms; {over("fresh_w1_fork")}',
         check(median('fresh_w1_fork'), 1.2, 'max')),
        ('reuse: W5 nested p50 <= 2x its W1 (issue 15)', over('reuse_w5_w1'), check(median('reuse_w5_w1'), 2, 'max')),
        ('fresh: W5 nested p50 <= 2x its W1 (issue 15)', over('fresh_w5_w1'), check(median('fresh_w5_w1'), 2, 'max')),
        ('reuse: W6 two 5-level chains on 2 workers <= 1.5x on 10 (issue 15)', over('reuse_chains_c2_c10'),
         check(median('reuse_chains_c2_c10'), 1.5, 'max')),
        ('fresh: W6 two 5-level chains on 2 workers <= 1.5x on 10 (issue 15)', over('fresh_chains_c2_c10'),
         check(median('fresh_chains_c2_c10'), 1.5, 'max')),
        ('celery backend: W2 >= 0.95x Celery (issue 15)',
         f'{fmt(w2_ours_celery)} vs {fmt(w2_celery)} tasks/s; {over("celery_w2_peer")}',
         check(median('celery_w2_peer'), 0.95, 'min')),
        ('memory per pending result <= 10 KB (server side)', f'{fmt(w4, 0)} B (with the client: {fmt(w4_total, 0)} B)',
         check(w4, 10 * 1024, 'max')),
        ('100,000 queued: throughput within 20 % of 1,000',
         f'{fmt(big)} vs {fmt(small)} tasks/s ({ratio(big, small)})', check(big, times(small, 0.8), 'min')),
    ]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]


def _range(data: dict | None, scale: float = 1.0, digits: int = 2) -> str:
    if not data:
        return 'n/a'
    return (f'{fmt(data["median"] * scale, digits)} ({fmt(data["min"] * scale, digits)}–'
            f'{fmt(data["max"] * scale, digits)})')


def _why_missing(run: Run, system: str, name: str) -> str:
    group = 'memory' if name == 'W4' else 'scale' if name in ('queued', 'clients') else 'core'
    entry = run.by.get((system, group)) or run.by.get((system, 'quick'), {})
    if entry.get('unavailable'):
        return 'unavailable'
    data = entry.get('workloads', {}).get(name, {})
    if 'skipped' in data:
        return 'n/a'
    return 'error' if entry.get('error') or 'error' in data else 'n/a'


def _load(run: Run, system: str, group: str) -> str:
    entry = run.by.get((system, group)) or run.by.get((system, 'quick'), {})
    load = entry.get('load')
    shown = 'n/a' if load is None else f'{load:.1f}'
    return f'{shown} (round {entry["round"]})' if len(run.rounds) > 1 and 'round' in entry else shown


def core_rows(run: Run) -> list[list[str]]:
    rows = []
    for system in run.systems():
        w1, w2 = run.workload(system, 'W1'), run.workload(system, 'W2')
        p50 = w1['p50_ms'] if w1 else None
        rows.append([
            LABELS[system], _load(run, system, 'core'),
            fmt(p50, 3) if w1 else _why_missing(run, system, 'W1'),
            fmt(w1['p99_ms'], 3) if w1 else 'n/a',
            spread_ratio(run.over_rounds(system, 'ppe', 'W1', 'p50_ms')),
            spread_ratio(run.over_rounds(system, 'celery-peer', 'W1', 'p50_ms')),
            _range(w2['rate'], digits=0) if w2 else _why_missing(run, system, 'W2'),
            spread_ratio(run.over_rounds(system, 'ppe', 'W2', 'rate', 'median')),
            spread_ratio(run.over_rounds(system, 'celery-peer', 'W2', 'rate', 'median')),
        ])
    return rows


def other_rows(run: Run) -> list[list[str]]:
    rows = []
    for system in run.systems():
        w3, w4, w5 = run.workload(system, 'W3'), run.workload(system, 'W4'), run.workload(system, 'W5')
        w6 = run.workload(system, 'W6')
        depth3 = 'n/a'
        if w5:
            chain = w5['depth3']
            depth3 = (f'yes ({chain["seconds"] * 1000:.0f} ms)' if chain['ok']
                      else f'no ({chain.get("error", "wrong value")[:40]} after {chain["seconds"]:.0f} s)')
        rows.append([
            LABELS[system], f"{_load(run, system, 'core')} / {_load(run, system, 'memory')}",
            _range(w3['wall_s'], digits=3) if w3 else _why_missing(run, system, 'W3'),
            _range(w3['efficiency'], scale=100, digits=1) if w3 else 'n/a',
            f'{mb(w4["idle"]["rss"])} / {mb(w4["idle"]["pss"])}' if w4 else _why_missing(run, system, 'W4'),
            f'{fmt(w4["server_bytes_per_pending"], 0)} / {fmt(w4["total_bytes_per_pending"], 0)}' if w4 else 'n/a',
            fmt(w5['depth1']['p50_ms'], 2) if w5 else _why_missing(run, system, 'W5'),
            depth3,
            (f"{fmt(w6['c2_s']['median'] * 1000, 0)} / {fmt(w6['c10_s']['median'] * 1000, 0)}"
             if w6 else 'n/a'),
        ])
    return rows


def rounds_lines(run: Run) -> list[str]:
    """The rounds with their load, then every ratio within each round and over the rounds."""
    cores = run.results['machine']['cores']
    lines = ['## Rounds', '',
             f'{len(run.rounds)} interleaved round(s): each round runs every system once, one after the other, so '
             'that other work on the machine spreads over all of them.  A ratio is computed within each round, '
             'then given as the median over the rounds [min–max].  Load: the 1-, 5- and 15-minute load averages '
             f'at the start and at the end of the round; a round whose 1-minute load was above {cores} (the '
             'cores) at either end is marked **loaded**: other work shared the machine during it.', '']
    round_rows = []
    for entry in run.rounds:
        if 'load_start' not in entry:
            round_rows.append([str(entry['round']), 'n/a', 'n/a', 'n/a'])
            continue
        round_rows.append([str(entry['round']), ' / '.join(f'{x:.2f}' for x in entry['load_start']),
                           ' / '.join(f'{x:.2f}' for x in entry['load_end']),
                           '**loaded**' if entry.get('overloaded') else 'no'])
    lines += _table(['round', 'load at start (1 / 5 / 15 min)', 'load at end', f'load above {cores}'],
                    round_rows) + ['']
    marks = [' (loaded)' if entry.get('overloaded') else '' for entry in run.rounds]
    ratio_rows = []
    for summary in run.ratios.values():
        per_round = summary.get('per_round') or [None] * len(run.rounds)
        shown = ['n/a' if r is None else f'{r:.2f}x{mark}' for r, mark in zip(per_round, marks, strict=True)]
        ratio_rows.append([summary['label'], spread_ratio(summary), ', '.join(shown)])
    lines += _table(['ratio (within one round)', 'median [min–max]', 'per round'], ratio_rows) + ['']
    return lines


def scale_lines(run: Run) -> list[str]:
    lines = []
    queued_rows, client_rows = [], []
    for system in run.systems():
        queued = run.workload(system, 'queued')
        if queued:
            for point in queued['points']:
                queued_rows.append([LABELS[system], f'{point["tasks"]:,}', fmt(point.get('rate')),
                                    fmt(point.get('submit_p99_ms'), 3), point.get('skipped', '')])
        clients = run.workload(system, 'clients')
        if clients:
            for point in clients['points']:
                client_rows.append([LABELS[system], str(point['clients']), clients['clients_are'],
                                    fmt(point['rate']), fmt(point['p50_ms'], 3), fmt(point['p99_ms'], 3)])
    if queued_rows:
        lines += ['### Queued tasks', '',
                  'N trivial tasks submitted, then all collected (one client).  *submit p99*: the 99th percentile '
                  'of the time one `run` call takes while the queue fills.', '']
        lines += _table(['system', 'queued tasks', 'tasks/s', 'submit p99 (ms)', 'note'], queued_rows) + ['']
    if client_rows:
        lines += ['### Concurrent clients', '',
                  'C clients, each doing sequential round trips (submit, then wait) of a trivial task, about '
                  f'{run.results.get("clients_tasks", "")} tasks in all.', '']
        lines += _table(['system', 'clients', 'clients are', 'tasks/s', 'p50 (ms)', 'p99 (ms)'], client_rows) + ['']
    return lines


def notes(run: Run) -> list[str]:
    lines = []
    for entry in run.results['runs']:
        label = LABELS.get(entry['system'], entry['system'])
        if entry.get('unavailable'):
            lines.append(f'- {label} ({entry["group"]}): not run: {entry["unavailable"]}')
        elif entry.get('error'):
            lines.append(f'- {label} ({entry["group"]}): failed: {entry["error"]}')
        for name, data in entry.get('workloads', {}).items():
            if 'skipped' in data:
                lines.append(f'- {label}, {name}: not measured: {data["skipped"]}')
            elif 'error' in data:
                lines.append(f'- {label}, {name}: error: {data["error"]}')
    return lines


def versions(run: Run) -> list[str]:
    merged: dict[str, str] = {}
    for entry in run.results['runs']:
        merged.update(entry.get('versions') or {})
    machine = run.results['machine']
    merged.setdefault('python', machine['python'])
    return [f'{name} {version}' for name, version in sorted(merged.items())]


def _count_notes(run: Run, params: dict) -> list[str]:
    """Say which systems ran smaller counts than the table headers say."""
    lines = []
    for system in run.systems():
        w2, w4 = run.workload(system, 'W2'), run.workload(system, 'W4')
        smaller = []
        if w2 and w2['tasks'] != params['w2_n']:
            smaller.append(f'W2 with {w2["tasks"]:,} tasks')
        if w4 and w4['pending'] != params['w4_n']:
            smaller.append(f'W4 with {w4["pending"]:,} pending results')
        if smaller:
            lines.append(f'{LABELS[system]} ran {" and ".join(smaller)}, to stay within the time of a run '
                         '(rates and bytes per result are still comparable).  ')
    return lines


def write_report(results: dict, path: str, images: list[str]) -> None:
    """Write the Markdown report of ``results`` to ``path``."""
    from .workloads import FULL, QUICK

    params = QUICK if results['quick'] else FULL
    results.setdefault('clients_tasks', params['clients_tasks'])
    run = Run(results)
    machine = run.results['machine']
    lines = [
        '# Benchmarks', '',
        'coldoc_tasks against the task runners its users would pick instead, measured side by side in one run '
        'on one machine.  Generated by `benchmarks/` (see [its README](../benchmarks/README.md)); do not edit by hand.',
        '',
        f'- command: `{results["command"]}`' + (' (a quick run)' if results['quick'] else ' (`make bench`)'),
        f'- date: {results["date"]}; duration {results["duration_s"]:.0f} s',
        f'- machine: {machine["cores"]} cores ({machine["cpu"] or "unknown CPU"}), Linux {machine["kernel"]}, '
        f'{machine["implementation"]} {machine["python"]}; load average before {machine["load_before"][0]:.2f}, '
        f'after {machine["load_after"][0]:.2f}',
        '- versions: ' + ', '.join(versions(run)),
        '',
        'Every system runs in a fresh process of its own per group of workloads, driven through the same '
        'adapter (submit, then wait).  Servers and workers have 2 worker processes each, on loopback; the Redis '
        'systems use Redis on 127.0.0.1:6379, each in a database of its own.  Machines here are noisy: read the '
        'ratios, which are computed within one round, more than the absolute numbers.  The W1, W2, W3 and W5 '
        'tables show, for each system, its values from the round where its W1 p50 was the median of its rounds '
        '(the lower median for an even count); their ratio columns are computed within each round, median over '
        'the rounds [min–max].  W4 and the scale runs measure each system on its own and run once, after the '
        'rounds.  The *load* column is the 1-minute load average when that system\'s process started: above '
        f'{machine["cores"]} (the cores), other work shared the machine and slowed that row, most of all W3.',
        '',
        '## Targets', '',
    ]
    lines += _table(['target (issues 3, 6 and 15)', 'measured', 'met'],
                    [[t, m, {True: 'yes', False: '**no**', None: 'n/a'}[ok]] for t, m, ok in targets(run)])
    lines += [''] + rounds_lines(run)
    lines += ['## Latency and throughput', '',
              f'W1: {params["w1_n"]} sequential round trips of a trivial task (after {params["warmup"]} to warm up). '
              f'W2: {params["w2_n"]:,} trivial tasks submitted, then all collected; tasks/s, median of '
              f'{params["w2_reps"]} (min–max).  Ratios: this system / the reference within each round, median over the '
              'rounds [min–max].', '']
    lines += _table(['system', 'load', 'W1 p50 (ms)', 'W1 p99 (ms)', 'W1 p50 / PPE', 'W1 p50 / Celery',
                     'W2 tasks/s', 'W2 / PPE', 'W2 / Celery'], core_rows(run))
    lines += [''] + _count_notes(run, params)
    lines += ['', '## CPU, memory, nesting', '',
              f'W3: {params["w3_n"]} tasks of {params["w3_ms"]:g} ms CPU each; wall time in seconds and efficiency '
              f'(ideal wall time on 2 cores / wall time), median of {params["w3_reps"]} (min–max).  '
              f'W4: idle RSS / PSS of the server tree (server and its workers), then the growth per result with '
              f'{params["w4_n"]:,} results finished and not collected, in bytes: on the server side (process tree and '
              'Redis keys) / in all (also the client process, which holds the handles and, for coldoc and '
              'ProcessPoolExecutor, the results, pushed to it as they are ready).  The result itself is a small int. '
              f'W5: p50 of a task that runs a child task and waits for it ({params["w5_n"]} times), and whether a '
              f'chain of depth 3 completes on 2 workers (timeout {params["w5_timeout"]:g} s per level).  '
              'W6 (the coldoc servers only): two 5-level nested chains at once, wall time in ms, median of '
              f'{params["w6_reps"]}, on the 2 workers / on a server of 10 workers started beside it, alternated.', '']
    lines += _table(['system', 'load (W3 / W4)', 'W3 wall (s)', 'W3 efficiency (%)', 'W4 idle RSS / PSS (MB)',
                     'W4 bytes per pending result', 'W5 nested p50 (ms)', 'W5 depth 3',
                     'W6 chains 2 / 10 workers (ms)'],
                    other_rows(run))
    lines += ['', '## Scale', '']
    lines += scale_lines(run)
    for image in images:
        lines += [f'![{os.path.splitext(os.path.basename(image))[0]}](img/{os.path.basename(image)})', '']
    profiles = results.get('profiles')
    if profiles:
        lines += ['## Profiles', '']
        for profile in profiles:
            lines += [f'### {profile["title"]}', '', profile['intro'], '', '```', *profile['lines'], '```', '']
    lines += ['## Notes', '']
    lines += notes(run) or ['- every system ran every workload it supports']
    lines += ['- the `simple` and bare-fork rows have no W4: a pending result there is an exited child and its pipe',
              '- ProcessPoolExecutor runs no nested tasks: a worker cannot submit to its parent\'s executor', '']
    with open(path, 'w') as stream:
        stream.write('\n'.join(lines))
