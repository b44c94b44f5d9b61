"""A coldoc server's status as text: what ``coldoc_tasks_cli coldoc status``
prints, and the demo too."""

from __future__ import annotations

import datetime

__all__ = ['format_status', 'format_progress']


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return '-'
    return datetime.datetime.fromtimestamp(timestamp).strftime('%Y-%m-%d %H:%M:%S')


def format_progress(report: dict) -> str:
    """A task's progress report in one line: ``3/10 (30%) message``."""
    done, total = report['done'], report['total']
    text = f'{done:g}' if total is None else f'{done:g}/{total:g}'
    if total:
        text += f' ({100 * done / total:.0f}%)'
    if report.get('message'):
        text += f' {report["message"]}'
    return text


def format_status(info: dict) -> str:
    """A readable table of a server's status."""
    lines = [f'coldoc task server pid {info["pid"]}, version {info["version"]}, up {info["uptime"]:.0f} s '
             f'since {_when(info["started"])}{" (stopping)" if info["stopping"] else ""}',
             f'socket {info["socket"]}; {info["clients"]} client connection(s), {info["workers"]} worker(s)', '',
             f'{"queue":<16} {"limit":>5} {"mode":<6} {"running":>7} {"queued":>7} {"lent":>5}']
    for q in info['queues']:
        lines.append(f'{q["name"]:<16} {q["concurrency"]:>5} {q["mode"]:<6} {q["running"]:>7} {q["queued"]:>7} '
                     f'{q["lent_slots"]:>5}')
    lines += ['', f'{"task":<32} {"function":<30} {"state":<9} {"queue":<10} {"started":<19} {"runtime":>8} '
              f'{"pid":>7}']
    for t in info['tasks']:
        runtime = '-' if t['runtime'] is None else f'{t["runtime"]:.1f}s'
        lines.append(f'{t["id"]:<32} {t["function"][-30:]:<30} {t["state"]:<9} {t["queue"]:<10} '
                     f'{_when(t["started"]):<19} {runtime:>8} {t["worker_pid"] or "-":>7}')
        if t.get('progress'):
            lines.append(f'{"":<32} progress: {format_progress(t["progress"])}')
    if info['tasks_queued'] > sum(1 for t in info['tasks'] if t['state'] == 'queued'):
        lines.append(f'... {info["tasks_queued"]} queued in all')
    if info.get('tasks_deferred'):
        lines.append(f'{info["tasks_deferred"]} deferred (held until their run_after time)')
    workers = info.get('worker_processes') or []
    if workers:
        lines += ['', f'{"worker":>7} {"queue":<16} {"state":<7} {"done":>5} {"age":>8} {"rss":>9}  task']
        for w in workers:
            rss = '-' if w['rss'] is None else f'{w["rss"] / 2**20:.1f}M'
            lines.append(f'{w["pid"]:>7} {w["queue"]:<16} {w["state"]:<7} {w["tasks_done"]:>5} {w["age"]:>7.0f}s '
                         f'{rss:>9}  {w["task"] or "-"}')
    failures = info.get('recent_failures') or []
    if failures:
        lines += ['', 'recent failures:']
        for t in failures[:5]:
            error = t['error']
            what = f'{error["type"]}: {error["message"]}' if error['type'] else error['message']
            lines.append(f'  {_when(t["finished"])} {t["id"]} {t["function"]} {t["state"]}: '
                         f'{what.splitlines()[0] if what else ""}'[:200])
    counters = info['counters']
    lines += ['', 'counters: ' + ', '.join(f'{name} {counters[name]}' for name in sorted(counters)),
              f'results held: {info["results_held"]}']
    return '\n'.join(lines)

