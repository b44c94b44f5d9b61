"""PNG plots of the scale curves and of the W1/W2 overview (matplotlib,
no display needed)."""

from __future__ import annotations

import os

COLORS = {'coldoc-reuse': '#1f77b4', 'coldoc-fresh': '#aec7e8', 'ppe': '#2ca02c', 'huey': '#ff7f0e',
          'celery-peer': '#d62728', 'rq': '#9467bd', 'barefork': '#8c564b', 'simple': '#c49c94',
          'nofork': '#7f7f7f', 'celery': '#ff9896', 'coldoc-journal': '#17becf', 'coldoc-journal-second': '#9edae5'}


def _pyplot():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def _curves(run, name: str, x_key: str) -> dict[str, list[dict]]:
    curves = {}
    for system in run.systems():
        data = run.workload(system, name)
        if data:
            points = [p for p in data['points'] if 'rate' in p]
            if points:
                curves[system] = sorted(points, key=lambda p: p[x_key])
    return curves


def _scale_figure(plt, curves: dict, x_key: str, y2_key: str, xlabel: str, y2label: str, title: str, path: str,
                  labels: dict) -> str:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for system, points in curves.items():
        xs = [p[x_key] for p in points]
        style = {'marker': 'o', 'color': COLORS.get(system), 'label': labels[system]}
        left.plot(xs, [p['rate'] for p in points], **style)
        right.plot(xs, [p[y2_key] for p in points], **style)
    for axis in (left, right):
        axis.set_xscale('log')
        axis.set_yscale('log')
        axis.set_xlabel(xlabel)
        axis.grid(True, which='both', alpha=0.3)
    left.set_ylabel('throughput (tasks/s, log scale)')
    right.set_ylabel(y2label)
    left.set_title('throughput')
    right.set_title(y2label.split(' (')[0])
    left.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _overview(plt, run, path: str, labels: dict) -> str | None:
    systems = [s for s in run.systems() if run.workload(s, 'W1') and run.workload(s, 'W2')]
    if not systems:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    names = [labels.get(s, s) for s in systems]
    positions = range(len(systems))
    p50 = [run.value(s, 'W1', 'p50_ms') for s in systems]
    p99 = [run.value(s, 'W1', 'p99_ms') for s in systems]
    left.barh([y + 0.2 for y in positions], p50, height=0.4, label='p50', color='#1f77b4')
    left.barh([y - 0.2 for y in positions], p99, height=0.4, label='p99', color='#aec7e8')
    left.set_xscale('log')
    left.set_xlabel('round-trip latency (ms, log scale)')
    left.set_title('W1: round trip of a trivial task\n(lower is better)')
    left.legend(fontsize=8)
    rates = [run.value(s, 'W2', 'rate', 'median') for s in systems]
    right.barh(list(positions), rates, color=[COLORS.get(s, '#999999') for s in systems])
    right.set_xscale('log')
    right.set_xlabel('throughput (tasks/s, log scale)')
    right.set_title('W2: tasks submitted, then all collected\n(higher is better)')
    for axis in (left, right):
        axis.set_yticks(list(positions))
        axis.set_yticklabels(names, fontsize=8)
        axis.invert_yaxis()
        axis.grid(True, axis='x', which='both', alpha=0.3)
    right.set_yticklabels([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def make_plots(results: dict, directory: str) -> list[str]:
    """Write the PNGs into ``directory``; return their paths."""
    from .report import LABELS, Run

    os.makedirs(directory, exist_ok=True)
    plt = _pyplot()
    run = Run(results)
    written = []
    overview = _overview(plt, run, os.path.join(directory, 'w1_w2_overview.png'), LABELS)
    if overview:
        written.append(overview)
    queued = _curves(run, 'queued', 'tasks')
    if queued:
        written.append(_scale_figure(plt, queued, 'tasks', 'submit_p99_ms', 'queued tasks (log scale)',
                                     'submit p99 (ms, log scale)', 'Scale: tasks queued at once',
                                     os.path.join(directory, 'scale_queued.png'), LABELS))
    clients = _curves(run, 'clients', 'clients')
    if clients:
        written.append(_scale_figure(plt, clients, 'clients', 'p99_ms', 'concurrent clients (log scale)',
                                     'round-trip p99 (ms, log scale)', 'Scale: concurrent clients',
                                     os.path.join(directory, 'scale_clients.png'), LABELS))
    return written
