"""The cost of ``coldoc_tasks.progress()`` inside a task, in a tight loop.

    python -m benchmarks.progress [--n 100000] [--systems simple,coldoc-reuse]

On each system a task times a loop of ``n`` iterations bare, then with a
``progress()`` call in each iteration (coalesced: a few reports a second
travel, the last one always); the report gives the cost per call and the
ratio of the two loops.  Nothing is written: the figures are printed, as
JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile

from .adapters import SYSTEMS


def measure(system: str, n: int, timeout: float = 120.0) -> dict:
    """Run :func:`bench_tasks.progress_loop` on ``system``; its figures."""
    adapter = SYSTEMS[system]()
    workdir = tempfile.mkdtemp(prefix=f'bench-progress-{system}-')
    try:
        adapter.start(workdir)
        adapter.collect(adapter.submit('progress_loop', 1000), timeout)  # warm up
        result = adapter.collect(adapter.submit('progress_loop', n), timeout)
    finally:
        try:
            adapter.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    result['system'] = system
    result['per_call_us'] = (result['progress_s'] - result['bare_s']) / n * 1e6
    result['ratio'] = result['progress_s'] / result['bare_s'] if result['bare_s'] else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.progress', description=__doc__.split('\n')[0])
    parser.add_argument('--n', type=int, default=100_000, help='iterations of the loop (default 100000)')
    parser.add_argument('--systems', default='simple,coldoc-reuse', help='comma-separated (default: %(default)s)')
    parser.add_argument('--json', action='store_true', help='print the figures as JSON')
    args = parser.parse_args(argv)
    results = [measure(system, args.n) for system in args.systems.split(',')]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    for r in results:
        print(f'{r["system"]:<14} {r["n"]} iterations: bare {r["bare_s"] * 1e3:.1f} ms, with progress() '
              f'{r["progress_s"] * 1e3:.1f} ms: {r["per_call_us"]:.2f} us per call, ratio {r["ratio"]:.1f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
