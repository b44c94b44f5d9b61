"""Interleaved rounds: the ratios computed within each round, their median
over the rounds with the range, the load of each round, and the round whose
entries the report's tables show.

A round runs every system once, one after the other; the next round runs
them all again, so that whatever else loads the machine spreads over every
system instead of landing on one.  A ratio is only ever taken between two
entries of the same round.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

#: (key, label, numerator system, denominator system, workload and path of the value)
RATIOS: list[tuple[str, str, str, str, tuple[str, ...]]] = [
    ('reuse_w1_ppe', 'coldoc reused W1 p50 / ProcessPoolExecutor W1 p50', 'coldoc-reuse', 'ppe',
     ('W1', 'p50_ms')),
    ('reuse_w2_ppe', 'coldoc reused W2 tasks/s / ProcessPoolExecutor W2', 'coldoc-reuse', 'ppe',
     ('W2', 'rate', 'median')),
    ('reuse_w2_huey', 'coldoc reused W2 tasks/s / huey W2', 'coldoc-reuse', 'huey', ('W2', 'rate', 'median')),
    ('reuse_w2_celery', 'coldoc reused W2 tasks/s / Celery W2', 'coldoc-reuse', 'celery-peer',
     ('W2', 'rate', 'median')),
    ('fresh_w1_fork', 'coldoc fresh W1 p50 / bare fork W1 p50', 'coldoc-fresh', 'barefork', ('W1', 'p50_ms')),
    ('celery_w1_peer', 'celery backend W1 p50 / Celery W1 p50', 'celery', 'celery-peer', ('W1', 'p50_ms')),
    ('celery_w2_peer', 'celery backend W2 tasks/s / Celery W2', 'celery', 'celery-peer', ('W2', 'rate', 'median')),
    ('journal_w1_reuse', 'coldoc with a journal W1 p50 / without', 'coldoc-journal', 'coldoc-reuse', ('W1', 'p50_ms')),
    ('journal_w2_reuse', 'coldoc with a journal W2 tasks/s / without', 'coldoc-journal', 'coldoc-reuse',
     ('W2', 'rate', 'median')),
    ('journal_second_w1_reuse', 'coldoc with a journal synced every second W1 p50 / without',
     'coldoc-journal-second', 'coldoc-reuse', ('W1', 'p50_ms')),
    ('journal_second_w2_reuse', 'coldoc with a journal synced every second W2 tasks/s / without',
     'coldoc-journal-second', 'coldoc-reuse', ('W2', 'rate', 'median')),
]
#: (key, label, system): a nested round trip against the same system's W1, within one round
NESTED: list[tuple[str, str, str]] = [
    ('reuse_w5_w1', 'coldoc reused W5 nested p50 / its W1 p50', 'coldoc-reuse'),
    ('fresh_w5_w1', 'coldoc fresh W5 nested p50 / its W1 p50', 'coldoc-fresh'),
]

#: (key, label, system): W6's two chains on 2 workers against 10, within one run of that system
CHAINS: list[tuple[str, str, str]] = [
    ('reuse_chains_c2_c10', 'coldoc reused W6 two 5-level chains, 2 workers / 10', 'coldoc-reuse'),
    ('fresh_chains_c2_c10', 'coldoc fresh W6 two 5-level chains, 2 workers / 10', 'coldoc-fresh'),
]


def value(entry: dict | None, workload: str, *path: str) -> float | None:
    """A number from one run entry's ``workload``, or None if it failed or is missing."""
    if not entry:
        return None
    data = entry.get('workloads', {}).get(workload)
    if not data or 'error' in data or 'skipped' in data:
        return None
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data if isinstance(data, (int, float)) else None


def _quotient(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _by_system(round_: dict) -> dict[str, dict]:
    return {entry['system']: entry for entry in round_['runs']}


def load_mark(load_start: float, load_end: float, cores: int) -> bool:
    """Whether a round ran while the 1-minute load average was above the core count."""
    return max(load_start, load_end) > cores


def start_round(number: int) -> dict:
    """A new round's record, with the load average at its start."""
    return {'round': number, 'load_start': list(os.getloadavg()), 'runs': []}


def end_round(round_: dict) -> None:
    """Record the load average at the end of ``round_`` and whether it was overloaded."""
    round_['load_end'] = list(os.getloadavg())
    round_['cores'] = os.cpu_count() or 1
    round_['overloaded'] = load_mark(round_['load_start'][0], round_['load_end'][0], round_['cores'])


def pair_ratio(round_: dict, numerator: str, denominator: str, workload: str, *path: str) -> float | None:
    """``numerator``'s value over ``denominator``'s, both from ``round_``."""
    systems = _by_system(round_)
    return _quotient(value(systems.get(numerator), workload, *path),
                     value(systems.get(denominator), workload, *path))


def spread(samples: list[float | None]) -> dict | None:
    """Median, min, max and count of the known samples (None if there is none)."""
    known = [s for s in samples if s is not None]
    if not known:
        return None
    return {'median': statistics.median(known), 'min': min(known), 'max': max(known), 'n': len(known),
            'per_round': samples}


def ratio_over_rounds(rounds: list[dict], numerator: str, denominator: str, workload: str,
                      *path: str) -> dict | None:
    """A ratio computed within each round, then summarised over the rounds."""
    return spread([pair_ratio(r, numerator, denominator, workload, *path) for r in rounds])


def summarise(rounds: list[dict]) -> list[dict]:
    """Every ratio of :data:`RATIOS`, :data:`NESTED` and :data:`CHAINS`, per round and over the rounds."""
    out = []
    for key, label, numerator, denominator, (workload, *path) in RATIOS:
        out.append({'key': key, 'label': label,
                    **(ratio_over_rounds(rounds, numerator, denominator, workload, *path) or {})})
    for key, label, system in NESTED:
        per_round = [_quotient(value(_by_system(r).get(system), 'W5', 'depth1', 'p50_ms'),
                               value(_by_system(r).get(system), 'W1', 'p50_ms')) for r in rounds]
        out.append({'key': key, 'label': label, **(spread(per_round) or {})})
    for key, label, system in CHAINS:
        per_round = [value(_by_system(r).get(system), 'W6', 'ratio') for r in rounds]
        out.append({'key': key, 'label': label, **(spread(per_round) or {})})
    return out


def _median_index(values: list[tuple[float, int]]) -> int:
    """The round of the lower median of ``(value, round index)`` pairs."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2][1]


def _table_key(entry: dict) -> float | None:
    p50 = value(entry, 'W1', 'p50_ms')
    return p50 if p50 is not None else value(entry, 'W2', 'rate', 'median')


def median_round_entries(rounds: list[dict], key: Callable[[dict], float | None] = _table_key) -> list[dict]:
    """For each system, its entry from the round where its W1 p50 was the median.

    The entry is tagged with ``round``; a system with no W1 in any round
    falls back on its W2 rate, then on its first round.
    """
    chosen = []
    systems = list(dict.fromkeys(entry['system'] for r in rounds for entry in r['runs']))
    for system in systems:
        present = [(index, _by_system(r)[system]) for index, r in enumerate(rounds) if system in _by_system(r)]
        measured = [(key(entry), index) for index, entry in present if key(entry) is not None]
        index = _median_index(measured) if measured else present[0][0]
        chosen.append(dict(_by_system(rounds[index])[system], round=rounds[index]['round']))
    return chosen
