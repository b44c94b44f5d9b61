"""Profiles of the coldoc server for the report: py-spy samples the
server (and, in fresh mode, the workers it forks) while a workload runs,
and the samples are summed per function (own time and time below).

File paths are cut to what follows the repository or ``site-packages``
(or to the file name for the standard library), so that no machine path
reaches the report.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from . import services
from .adapters.coldoc import REPO_ROOT, ColdocAdapter
from .workloads import FULL, submit_then_collect, w1_latency

_FRAME = re.compile(r'^(?P<function>.*) \((?P<path>.*?)(?::(?P<line>\d+))?\)$')
TOP = 12


def _short(path: str) -> str:
    if path.startswith(REPO_ROOT + os.sep):
        return os.path.relpath(path, REPO_ROOT)
    if 'site-packages' + os.sep in path:
        return path.split('site-packages' + os.sep, 1)[1]
    return os.path.basename(path)


def _frame(text: str) -> str:
    match = _FRAME.match(text.strip())
    if not match:
        return text.strip()
    return f'{match["function"]} ({_short(match["path"])})'


def summarize(raw_path: str, top: int = TOP) -> list[str]:
    """The functions with the most samples in a py-spy raw (collapsed) file."""
    own: collections.Counter[str] = collections.Counter()
    below: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path) as stream:
        for line in stream:
            stack, _, count = line.rstrip('\n').rpartition(' ')
            if not stack or not count.isdigit():
                continue
            frames = [_frame(frame) for frame in stack.split(';') if not frame.startswith('process ')]
            if not frames:
                continue
            n = int(count)
            total += n
            own[frames[-1]] += n
            for frame in set(frames):
                below[frame] += n
    if not total:
        return ['(no samples)']
    lines = [f'{total} samples; own time (the function itself):']
    lines += [f'  {100 * n / total:5.1f} %  {name}' for name, n in own.most_common(top)]
    # the frames every sample passes through (the loop, the module start) say nothing
    inclusive = [(name, n) for name, n in below.most_common() if n < 0.97 * total][:top]
    lines += ['inclusive time (the function and what it calls), frames on every sample left out:']
    lines += [f'  {100 * n / total:5.1f} %  {name}' for name, n in inclusive]
    return lines


def record(pid: int, work: Callable[[], None], workdir: str, subprocesses: bool = False) -> list[str]:
    """Sample ``pid`` with py-spy while ``work()`` runs; the summary."""
    py_spy = shutil.which('py-spy', path=os.path.dirname(sys.executable)) or shutil.which('py-spy')
    if py_spy is None:
        return ['(py-spy is not installed)']
    raw = os.path.join(workdir, f'pyspy-{pid}.txt')
    command = [py_spy, 'record', '--pid', str(pid), '--rate', '500', '--format', 'raw', '--output', raw]
    if subprocesses:
        command.append('--subprocesses')
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    services.record_pid(spy.pid)
    try:
        time.sleep(1.0)  # py-spy attaches
        work()
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            services.kill_group(spy.pid)
    return summarize(raw) if os.path.exists(raw) else ['(py-spy wrote no profile)']


def _profile(mode: str, title: str, intro: str, work: Callable[[ColdocAdapter], None], logdir: str) -> dict:
    workdir = tempfile.mkdtemp(prefix='bench-profile-', dir=logdir)
    adapter = ColdocAdapter(mode)
    try:
        adapter.start(workdir)
        lines = record(adapter.pid, lambda: work(adapter), workdir, subprocesses=(mode == 'fresh'))
    except Exception as exc:
        lines = [f'(profile failed: {type(exc).__name__}: {exc})']
    finally:
        adapter.stop()
    return {'title': title, 'intro': intro, 'lines': lines}


def profile_all(logdir: str) -> list[dict]:
    """Where a reused worker's round trip goes (:mod:`.pertask`), then the
    server-side profiles of W1 in fresh mode and of W2 with reused workers."""
    from .pertask import ROUND_TRIPS, measure

    try:
        breakdown = measure()
    except Exception as exc:
        breakdown = [f'(failed: {type(exc).__name__}: {exc})']
    return [
        {'title': 'Where a round trip goes: coldoc with reused workers, and ProcessPoolExecutor',
         'intro': f'{ROUND_TRIPS:,} sequential round trips of a trivial task on each; per round trip, the time '
                  'each process ran on a CPU and waited on a run queue, from the scheduler\'s accounts '
                  '(`/proc/PID/task/TID/schedstat`, every thread), and the wall time no CPU time covers: the '
                  'wake-ups and context switches of each hand-over between processes and threads '
                  '(`python -m benchmarks.pertask`).',
         'lines': breakdown},
        _profile('fresh', 'Fresh process per task: the server during W1',
                 'py-spy, 500 Hz, on the coldoc server and the workers it forks, during W1 (300 sequential round '
                 'trips).  Idle time (the server blocked in `select`) is not sampled.',
                 lambda adapter: w1_latency(adapter, FULL), logdir),
        _profile('reuse', 'Reused workers: the server during W2',
                 'py-spy, 500 Hz, on the coldoc server during W2 (3 x 1,000 tasks submitted, then collected).',
                 lambda adapter: [submit_then_collect(adapter, 1000, 60) for _ in range(3)], logdir),
    ]
