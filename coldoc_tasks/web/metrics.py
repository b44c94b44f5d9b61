"""The counters and gauges of a task server in the Prometheus text
exposition format (version 0.0.4), from a :func:`~.data.snapshot`.

Every metric is named ``coldoc_tasks_...``.  ``coldoc_tasks_up`` is 1 when
the server answered and 0 when not (then it is the only metric, with the
scrape's time).  Each counter of the server becomes a counter
``coldoc_tasks_NAME_total``; a counter the server adds later is exported
too, with a generic help.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

__all__ = ['prometheus_text', 'CONTENT_TYPE']

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
PREFIX = 'coldoc_tasks_'

#: What each counter of the server's status counts.
COUNTER_HELP = {
    'submitted': 'Tasks submitted.',
    'done': 'Tasks that returned a value.',
    'failed': 'Tasks that raised an exception.',
    'terminated': 'Running tasks terminated on request.',
    'cancelled': 'Tasks cancelled before they ran (terminated while queued, refused, or the server stopped).',
    'lost': 'Tasks whose worker process vanished during the task.',
    'collected': 'Outcomes delivered to a waiter.',
    'expired': 'Outcomes dropped after the retention time without being collected.',
    'connections': 'Client connections accepted.',
    'auth_failures': 'Connections that failed the authentication handshake.',
    'protocol_errors': 'Connections dropped for breaking the protocol.',
    'recycled_for_memory': 'Reused workers recycled for holding more memory than the limit.',
}

#: The gauges of each queue: (field of the queue's status, metric, help).
QUEUE_GAUGES = (
    ('concurrency', 'queue_concurrency', 'Tasks a queue runs at once (its slots, without the lent ones).'),
    ('running', 'queue_running', 'Tasks running on a queue.'),
    ('queued', 'queue_queued', 'Tasks waiting in a queue.'),
    ('lent_slots', 'queue_lent_slots', 'Extra slots a queue has while its tasks wait for subtasks.'),
    ('idle_workers', 'queue_idle_workers', 'Idle worker processes of a queue.'),
)


def _number(value: Any) -> str:
    if value is None:
        return 'NaN'
    value = float(value)
    if math.isnan(value):
        return 'NaN'
    if math.isinf(value):
        return '+Inf' if value > 0 else '-Inf'
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _label_value(text: str) -> str:
    return str(text).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _help(text: str) -> str:
    return text.replace('\\', '\\\\').replace('\n', '\\n')


def _metric_name(name: str) -> str:
    name = re.sub(r'[^a-zA-Z0-9_]', '_', name)
    return name if not name[:1].isdigit() else f'_{name}'


class _Exposition:
    def __init__(self):
        self.lines: list[str] = []
        self.names: set[str] = set()

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], Any]]) -> None:
        # In this format a family and its samples have one name: a counter's ends in _total.
        suffix = '_total' if kind == 'counter' else ''
        if PREFIX + name + suffix in self.names:  # two counters whose names differ in their odd characters
            name = f'{name}_{len(self.names)}'
        name = PREFIX + name + suffix
        self.names.add(name)
        self.lines += [f'# HELP {name} {_help(help_text)}', f'# TYPE {name} {kind}']
        for labels, value in samples:
            text = ','.join(f'{key}="{_label_value(val)}"' for key, val in labels.items())
            self.lines.append(f'{name}{{{text}}} {_number(value)}' if text else f'{name} {_number(value)}')

    def one(self, name: str, kind: str, help_text: str, value: Any) -> None:
        self.family(name, kind, help_text, [({}, value)])


def prometheus_text(snapshot: dict[str, Any]) -> str:
    """The exposition of ``snapshot`` (what :func:`~.data.snapshot` returns)."""
    out = _Exposition()
    server = snapshot.get('server')
    out.one('up', 'gauge', 'Whether the task server answered (1) or not (0).', 1 if server else 0)
    out.one('scrape_time_seconds', 'gauge', 'When the server was asked (seconds since the epoch).',
            snapshot['time'])
    if not server:
        return '\n'.join(out.lines) + '\n'
    out.one('start_time_seconds', 'gauge', 'When the server started (seconds since the epoch).', server['started'])
    out.one('uptime_seconds', 'gauge', 'Seconds since the server started.', server['uptime'])
    out.one('stopping', 'gauge', 'Whether the server is stopping (1) or not (0).', int(bool(server['stopping'])))
    out.one('clients', 'gauge', 'Client connections open now.', server['clients'])
    out.one('workers', 'gauge', 'Worker processes alive now.', server['workers'])
    out.one('tasks_queued', 'gauge', 'Tasks waiting in every queue.', server['tasks_queued'])
    out.one('tasks_running', 'gauge', 'Tasks running now.',
            sum(1 for task in server['tasks'] if task['state'] == 'running'))
    out.one('results_held', 'gauge', 'Outcomes held by the server, not yet collected.', server['results_held'])
    out.one('server_resident_bytes', 'gauge', "The server process's resident memory.", server.get('rss'))
    workers = server.get('worker_processes') or []
    out.one('workers_resident_bytes', 'gauge', 'The resident memory of all worker processes, added up.',
            sum(worker['rss'] or 0 for worker in workers))
    out.one('workers_busy', 'gauge', 'Worker processes running a task now.',
            sum(1 for worker in workers if worker['task'] is not None))
    for field, name, help_text in QUEUE_GAUGES:
        out.family(name, 'gauge', help_text, [({'queue': queue['name']}, queue[field]) for queue in server['queues']])
    for counter in sorted(server['counters']):
        help_text = COUNTER_HELP.get(counter, f'The server\'s counter "{counter}".')
        out.one(_metric_name(counter), 'counter', help_text, server['counters'][counter])
    return '\n'.join(out.lines) + '\n'
