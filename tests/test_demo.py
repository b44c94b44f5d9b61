"""``make demo`` runs ``python -m coldoc_tasks.demo``: it must print real
results, progress and a remote traceback, and never leave its server running."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

from tests.helpers import wait_process_gone

DEMO = [sys.executable, '-m', 'coldoc_tasks.demo']


def _server(out: str) -> tuple[int, str]:
    """The pid and the directory of the server the demo said it started."""
    pid = re.search(r'coldoc task server started \(pid (\d+)\)', out)
    directory = re.search(r'starting a coldoc task server in (\S+) \.\.\.', out)
    assert pid and directory, out
    return int(pid.group(1)), directory.group(1)


def test_demo_prints_results_progress_and_a_remote_traceback():
    done = subprocess.run(DEMO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    pid, directory = _server(out)
    for line in ('there are 17,984 primes below 200,000', 'there are 5,133 primes below 50,000',
                 'there are 25,997 primes below 300,000', 'there are 9,592 primes below 100,000'):
        assert line in out
    # progress, as plain lines (stdout is not a terminal): no escape sequences
    assert '\033' not in out
    assert re.search(r'count_primes\(300,000\) +\[#{24}\] 100%  done: 25,997', out), out
    assert re.search(r'parse_ages\(\.\.\.\) +\[[#-]{24}\] +60%  failed: ValueError', out), out
    # a line per quarter passed: parse_ages reports at 0/5, 1/5, 2/5, 3/5, slowly enough to be seen
    assert re.search(r'parse_ages\(\.\.\.\) +\[-{24}\]   0%\n', out), out
    assert re.search(r'parse_ages\(\.\.\.\) +\[(#{6}-{18}\]  25|#{12}-{12}\]  50)%\n', out), out
    # the traceback from where the task ran, then the server's status
    assert 'parse_ages failed, as it should' in out
    assert 'in parse_ages' in out and 'in parse_age\n' in out and "ValueError: invalid literal" in out
    assert f'coldoc task server pid {pid}' in out and 'failed 1' in out and 'done 4' in out
    assert f'coldoc task server (pid {pid}) stopped' in out
    assert wait_process_gone(pid, timeout=10)
    assert not os.path.exists(directory)


def test_demo_interrupted_stops_its_server():
    demo = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = ''
        deadline = time.monotonic() + 60
        while 'tasks submitted' not in out:
            assert time.monotonic() < deadline and select.select([demo.stdout], [], [], 60)[0], out
            line = demo.stdout.readline()
            assert line, out + demo.stderr.read()
            out += line
        pid, directory = _server(out)
        demo.send_signal(signal.SIGINT)
        rest, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, out + rest + err
    assert 'interrupted' in rest and f'coldoc task server (pid {pid}) stopped' in rest, rest
    assert 'Traceback' not in err, err
    assert wait_process_gone(pid, timeout=10)
    assert not os.path.exists(directory)
