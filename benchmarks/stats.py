"""Small statistics: percentiles, medians and ranges of samples."""

from __future__ import annotations

import statistics


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``samples``, linearly interpolated."""
    if not samples:
        return float('nan')
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(samples: list[float]) -> dict:
    """Median, min and max of repeated measurements."""
    if not samples:
        return {'median': float('nan'), 'min': float('nan'), 'max': float('nan'), 'n': 0}
    return {'median': statistics.median(samples), 'min': min(samples), 'max': max(samples), 'n': len(samples)}


def latency_summary(seconds: list[float]) -> dict:
    """p50, p99, min and max of latencies given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {'p50_ms': percentile(ms, 50), 'p99_ms': percentile(ms, 99), 'min_ms': min(ms), 'max_ms': max(ms),
            'n': len(ms)}
