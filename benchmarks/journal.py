"""The journal's size after many tasks: compaction keeps it bounded.

    python -m benchmarks.journal [--n 100000] [--window 1000] [--sync batch|second]

A coldoc server with a journal (reused workers, concurrency 2) runs ``n``
trivial tasks, submitted ``window`` at a time and all collected; the
journal's size is read after each window (its peak) and at the end, once
the last collections are recorded.  Nothing is written but the server's
files in a temporary directory, removed at the end; the figures are
printed (as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from .adapters.coldoc import ColdocAdapter


def measure(n: int, window: int, sync: str = 'batch', timeout: float = 120.0) -> dict:
    """Run ``n`` trivial tasks on a server with a journal; the journal's sizes."""
    adapter = ColdocAdapter('reuse', journal=True, journal_sync=sync)
    workdir = tempfile.mkdtemp(prefix='bench-journal-')
    path = os.path.join(workdir, 'coldoc.journal')
    peak = 0
    try:
        adapter.start(workdir)
        start = time.perf_counter()
        for first in range(0, n, window):
            handles = [adapter.submit('noop', i) for i in range(first, min(n, first + window))]
            for i, handle in enumerate(handles, first):
                if adapter.collect(handle, timeout) != i:
                    raise AssertionError(f'task {i} returned something else')
            peak = max(peak, os.path.getsize(path))
        wall = time.perf_counter() - start
        # The last collections are written at a later turn of the server's loop: one more task makes one.
        adapter.collect(adapter.submit('noop', -1), timeout)
        time.sleep(1.5)  # and its housekeeping turn (every second) records that one's collection
        final = os.path.getsize(path)
        held = adapter.status()['results_held']
    finally:
        try:
            adapter.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return {'tasks': n, 'window': window, 'sync': sync, 'rate': n / wall, 'peak_bytes': peak, 'final_bytes': final,
            'results_held': held}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.journal', description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=100_000, help='tasks (default 100000)')
    parser.add_argument('--window', type=int, default=1000, help='tasks submitted before collecting (default 1000)')
    parser.add_argument('--sync', choices=('batch', 'second'), default='batch',
                        help="the server's journal_sync (default batch)")
    parser.add_argument('--json', action='store_true', help='print the figures as JSON')
    args = parser.parse_args(argv)
    result = measure(args.n, args.window, args.sync)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f'{result["tasks"]} tasks ({result["rate"]:.0f} tasks/s, windows of {result["window"]}, journal synced '
          f'every {result["sync"]}): journal '
          f'{result["peak_bytes"] / 1024:.0f} KiB at most, {result["final_bytes"]} bytes at the end '
          f'({result["results_held"]} results held)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
