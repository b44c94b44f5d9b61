"""Servers with a journal, killed and started again on the same infofile
and journal, for the durability tests."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

from coldoc_tasks.coldoc_tasks import shutdown, tasks_daemon_start
from tests.fixtures_coldoc import ROOT, log_tail
from tests.helpers import wait_process_gone


class JournalServer:
    """A server with a journal, in a private directory; :meth:`kill` it
    (SIGKILL) and :meth:`start` it again on the same files."""

    def __init__(self, queues=('default:2:reuse',), **options):
        self.directory = tempfile.mkdtemp(prefix='ct-jrn-')
        self.infofile = os.path.join(self.directory, 'info')
        self.logfile = os.path.join(self.directory, 'log')
        self.journal = os.path.join(self.directory, 'journal')
        self.queues = list(queues)
        self.options = dict(terminate_grace=1.0, stop_grace=1.0, journal=self.journal, **options)
        self.pid: int | None = None

    def start(self) -> int:
        self.pid = tasks_daemon_start(self.infofile, logfile=self.logfile, queues=self.queues,
                                      pythonpath=[str(ROOT)], timeout=60, **self.options)
        return self.pid

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert wait_process_gone(self.pid, timeout=30), 'the killed server did not go'

    def stop(self, grace: float = 0) -> None:
        if self.pid is None:
            return
        try:
            shutdown(self.infofile, grace=grace, timeout=60)
        except Exception:  # a test may have killed it already
            pass
        if not wait_process_gone(self.pid, timeout=15):
            os.kill(self.pid, signal.SIGKILL)
            wait_process_gone(self.pid, timeout=15)

    def remove(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def runs(self, runs_directory: str, name: str) -> int:
        """How many times the task that records itself as ``name`` ran."""
        try:
            with open(os.path.join(runs_directory, name), encoding='utf-8') as stream:
                return len(stream.readlines())
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.logfile, lines)
