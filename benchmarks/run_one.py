"""Run one workload group on one system, in this fresh process, and print
the results as one JSON object on stdout.

    python -m benchmarks.run_one SYSTEM GROUP [--quick]

SYSTEM is a key of :data:`benchmarks.adapters.SYSTEMS`, GROUP a key of
:data:`benchmarks.workloads.GROUPS`.  Whatever happens (an error, SIGTERM,
Ctrl-C), the system's servers and workers are stopped before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

from .adapters import SYSTEMS, Unavailable
from .workloads import FULL, GROUPS, QUICK


def _terminate(signum, frame):
    # turn SIGTERM into an exception, so that the finally clauses stop the services
    raise SystemExit(f'stopped by signal {signum}')


def run(system: str, group: str, quick: bool) -> dict:
    """Start ``system``, run ``group``'s workloads, stop it; the results."""
    params = QUICK if quick else FULL
    # other work on the machine skews every number: say how busy it was
    output: dict = {'system': system, 'group': group, 'quick': quick, 'workloads': {}, 'load': os.getloadavg()[0]}
    workdir = tempfile.mkdtemp(prefix=f'bench-{system}-')
    adapter = SYSTEMS[system]()
    output.update(label=adapter.label, kind=adapter.kind)
    try:
        started = time.perf_counter()
        adapter.start(workdir)
        output['start_s'] = time.perf_counter() - started
        output['versions'] = adapter.versions()
        for name, workload in GROUPS[group]:
            began = time.perf_counter()
            try:
                output['workloads'][name] = workload(adapter, params)
            except Exception as exc:
                output['workloads'][name] = {'error': f'{type(exc).__name__}: {exc}'[:400]}
                traceback.print_exc()
            output['workloads'][name]['elapsed_s'] = time.perf_counter() - began
    except Unavailable as exc:
        output['unavailable'] = str(exc)
    except Exception as exc:
        output['error'] = f'{type(exc).__name__}: {exc}'[:400]
        traceback.print_exc()
    finally:
        try:
            adapter.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks.run_one', description=__doc__.split('\n')[0])
    parser.add_argument('system', choices=sorted(SYSTEMS))
    parser.add_argument('group', choices=sorted(GROUPS))
    parser.add_argument('--quick', action='store_true', help='the small parameters of a quick run')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    result = run(args.system, args.group, args.quick)
    sys.stdout.write(json.dumps(result) + '\n')
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
