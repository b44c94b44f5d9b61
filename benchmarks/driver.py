"""The whole run: every system and workload group in a fresh process, then
the report and the plots.

    python -m benchmarks [--quick] [--rounds N] [--systems a,b] [--out DIR]

A full run writes ``docs/benchmarks.md``, ``docs/img/*.png`` and
``benchmarks/results/latest.json``; ``--quick`` writes to
``build/bench-quick/`` unless ``--out`` says otherwise, so that a quick run
never replaces the committed report.  Each child gets a bounded time; on
timeout or Ctrl-C it is sent SIGTERM (it then stops its services), then
SIGKILL, and whatever it recorded in its pid file is stopped too.

The systems run in interleaved rounds (every system once, then every
system again, ...: 3 rounds in a full run, 1 in a quick one unless
``--rounds`` says otherwise) of the group the ratios come from (``core``,
or ``quick``); the ``memory`` and ``scale`` groups, which measure each
system on its own, run once after the rounds.  See :mod:`benchmarks.rounds`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time

from . import rounds as rounds_
from . import services
from .adapters import SYSTEMS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: coldoc and its two nearest peers, for the scale runs
SCALE_SYSTEMS = ['coldoc-reuse', 'ppe', 'huey']
#: interleaved rounds by default: (full, quick)
FULL_ROUNDS, QUICK_ROUNDS = 3, 1
#: seconds a child may take, per group: (full, quick)
GROUP_TIMEOUTS = {'core': (150, 60), 'memory': (150, 60), 'scale': (240, 60), 'quick': (60, 60)}


def run_child(system: str, group: str, quick: bool, logdir: str) -> dict:
    """Run ``benchmarks.run_one`` in a new session; its JSON, or an error."""
    timeout = GROUP_TIMEOUTS[group][1 if quick else 0]
    pidfile = os.path.join(logdir, f'{system}-{group}.pids')
    environment = dict(os.environ, **{services.PIDFILE_ENV: pidfile})
    environment['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, environment.get('PYTHONPATH')]))
    command = [sys.executable, '-m', 'benchmarks.run_one', system, group] + (['--quick'] if quick else [])
    with open(os.path.join(logdir, f'{system}-{group}.log'), 'wb') as log:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                 env=environment, cwd=REPO_ROOT, start_new_session=True)
    services.record_pid(child.pid)
    try:
        output, _ = child.communicate(timeout=timeout)
        lines = output.decode('utf-8', 'replace').strip().splitlines()
        if child.returncode != 0 or not lines:
            return {'system': system, 'group': group, 'error': f'exited with {child.returncode}; see its log'}
        return json.loads(lines[-1])
    except subprocess.TimeoutExpired:
        return {'system': system, 'group': group, 'error': f'did not finish within {timeout} s'}
    finally:
        if child.poll() is None:
            services.kill_group(child.pid, grace=15.0)  # SIGTERM: its finally stops its services
            child.wait()
        services.kill_recorded(pidfile)


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, not {number}')
    return number


def _run_and_print(system: str, group: str, quick: bool, logdir: str, label: str) -> dict:
    began = time.time()
    result = run_child(system, group, quick, logdir)
    result['wall_s'] = time.time() - began
    note = result.get('error') or result.get('unavailable') or 'ok'
    print(f'{label:>8} {system:>13} {group:<7} {result["wall_s"]:6.1f} s  {note}', flush=True)
    return result


def machine() -> dict:
    """What the run ran on."""
    model = ''
    try:
        with open('/proc/cpuinfo') as stream:
            model = next((line.split(':', 1)[1].strip() for line in stream if line.startswith('model name')), '')
    except OSError:
        pass
    return {'cores': os.cpu_count(), 'cpu': model, 'kernel': platform.release(), 'python': platform.python_version(),
            'implementation': platform.python_implementation(), 'load_before': os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='small parameters, about a minute (for CI)')
    parser.add_argument('--systems', help='comma-separated systems (default: all): ' + ', '.join(SYSTEMS))
    parser.add_argument('--out', help='directory of the report (default: docs, or build/bench-quick with --quick)')
    parser.add_argument('--rounds', type=_positive, help='interleaved rounds of every system '
                        f'(default: {FULL_ROUNDS}, or {QUICK_ROUNDS} with --quick)')
    parser.add_argument('--no-profile', action='store_true', help='skip the profiles of the missed targets')
    args = parser.parse_args(argv)
    systems = args.systems.split(',') if args.systems else list(SYSTEMS)
    unknown = [name for name in systems if name not in SYSTEMS]
    if unknown:
        parser.error(f'unknown systems: {", ".join(unknown)}')
    out = args.out or os.path.join(REPO_ROOT, *(('build', 'bench-quick') if args.quick else ('docs',)))
    os.makedirs(out, exist_ok=True)
    logdir = tempfile.mkdtemp(prefix='bench-logs-')
    os.environ[services.PIDFILE_ENV] = os.path.join(logdir, 'driver.pids')
    signal.signal(signal.SIGTERM, lambda *_: sys.exit('stopped by SIGTERM'))
    started = time.time()
    given = sys.argv[1:] if argv is None else argv
    results = {'command': shlex.join(['python', '-m', 'benchmarks', *given]),
               'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
               'quick': args.quick, 'machine': machine(), 'runs': []}
    rounds_count = args.rounds or (QUICK_ROUNDS if args.quick else FULL_ROUNDS)
    round_group = 'quick' if args.quick else 'core'
    once = [(system, 'memory') for system in systems] if not args.quick else []
    once += [(system, 'scale') for system in SCALE_SYSTEMS if system in systems and not args.quick]
    results['rounds'] = []
    redis = services.ensure_redis(logdir)
    try:
        for number in range(1, rounds_count + 1):
            round_ = rounds_.start_round(number)
            results['rounds'].append(round_)
            for system in systems:
                round_['runs'].append(_run_and_print(system, round_group, args.quick, logdir,
                                                     f'round {number}'))
            rounds_.end_round(round_)
            load = f'load {round_["load_start"][0]:.2f} -> {round_["load_end"][0]:.2f}'
            print(f'round {number}: {load}' + (f' (above {round_["cores"]} cores)' if round_['overloaded'] else ''),
                  flush=True)
        results['runs'] = rounds_.median_round_entries(results['rounds'])
        for system, group in once:
            results['runs'].append(_run_and_print(system, group, args.quick, logdir, 'once'))
        if not args.quick and not args.no_profile and 'coldoc-reuse' in systems:
            from .profiling import profile_all

            results['profiles'] = profile_all(logdir)
    finally:
        if redis is not None:
            services.kill_group(redis.pid)
            redis.wait()
        services.kill_recorded(os.environ[services.PIDFILE_ENV])
    results['machine']['load_after'] = os.getloadavg()
    results['duration_s'] = time.time() - started
    results['ratios'] = rounds_.summarise(results['rounds'])
    write_outputs(results, out, quick=args.quick)
    print(f'done in {results["duration_s"]:.0f} s; report: {os.path.relpath(os.path.join(out, "benchmarks.md"))} '
          f'(logs: {logdir})')
    return 0


def write_outputs(results: dict, out: str, quick: bool) -> None:
    """The JSON of the run, the plots and the Markdown report."""
    from .plots import make_plots
    from .report import write_report

    results_dir = os.path.join(out, 'results') if quick else os.path.join(REPO_ROOT, 'benchmarks', 'results')
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, 'latest.json'), 'w') as stream:
        json.dump(results, stream, indent=1)
    images = make_plots(results, os.path.join(out, 'img'))
    write_report(results, os.path.join(out, 'benchmarks.md'), images)


if __name__ == '__main__':
    sys.exit(main())
