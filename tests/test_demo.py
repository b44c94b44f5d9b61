"""``make demo`` runs ``python -m coldoc_tasks.demo``: it must print real results."""

from __future__ import annotations

import subprocess
import sys


def test_demo_prints_results_and_a_remote_traceback():
    done = subprocess.run([sys.executable, '-m', 'coldoc_tasks.demo'], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for line in ('there are 17,984 primes below 200,000', 'there are 5,133 primes below 50,000',
                 'there are 25,997 primes below 300,000', 'there are 9,592 primes below 100,000'):
        assert line in out
    assert 'parse_age failed, as it should' in out
    assert 'in parse_age' in out and 'ValueError' in out  # the traceback from where the task ran
