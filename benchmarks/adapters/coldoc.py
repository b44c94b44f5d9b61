"""Ours: the coldoc task server, with reused workers or a fresh process per
task, two workers, started and stopped by this adapter."""

from __future__ import annotations

import os
import time

from .. import services
from .local import ForkClassAdapter

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ColdocAdapter(ForkClassAdapter):
    """A coldoc task server of one queue, of ``concurrency`` workers (2, as the
    peers), in ``mode``; with ``journal``, it records every task in a journal
    in the work directory."""

    def __init__(self, mode: str, journal: bool = False, journal_sync: str = 'batch', concurrency: int = 2):
        self.mode = mode
        self.concurrency = concurrency
        self.journal = journal
        self.journal_sync = journal_sync
        self.name = f'coldoc-{mode}'
        if journal:
            self.name = 'coldoc-journal' + ('-second' if journal_sync == 'second' else '')
        self.label = f'coldoc_tasks coldoc, {"reused workers" if mode == "reuse" else "fresh process per task"}'
        if journal:
            self.label += f', with a journal synced every {"second" if journal_sync == "second" else "batch"}'
        self.pid: int | None = None
        if mode == 'fresh':  # a process forked per task: about 250 tasks/s here
            self.w4_fraction = 0.2
        self.infofile = ''

    def start(self, workdir: str) -> None:
        from coldoc_tasks.coldoc_tasks import bind_fork_class, tasks_daemon_start

        self.workdir = workdir
        self.infofile = os.path.join(workdir, 'coldoc.info')
        self.pid = tasks_daemon_start(self.infofile, logfile=os.path.join(workdir, 'coldoc.log'),
                                      queues=[f'default:{self.concurrency}:{self.mode}'], pythonpath=[REPO_ROOT],
                                      timeout=30,
                                      # as the other systems, workers start with the tasks' module imported
                                      preload=['benchmarks.bench_tasks'],
                                      journal=os.path.join(workdir, 'coldoc.journal') if self.journal else None,
                                      **({'journal_sync': self.journal_sync} if self.journal else {}))
        services.record_pid(self.pid)
        self.fork_class = bind_fork_class(self.infofile)
        # a first task: the client's connection is made, and reused workers exist
        for fork in [self.submit('noop', i) for i in range(2)]:
            self.collect(fork, 30)

    def sibling(self, workdir: str, concurrency: int) -> ColdocAdapter:
        """Another server like this one, with ``concurrency`` workers, started
        in ``workdir`` (W6 compares the two in the same round)."""
        other = ColdocAdapter(self.mode, self.journal, self.journal_sync, concurrency)
        other.start(workdir)
        return other

    def stop(self) -> None:
        from coldoc_tasks.coldoc_tasks import shutdown

        if self.pid is None:
            return
        try:
            shutdown(self.infofile, grace=0, timeout=15)
        except Exception:
            pass
        services.kill_group(self.pid, grace=2.0)
        if not services.wait_gone(self.pid, 2.0):
            os.kill(self.pid, 9)

    def server_pids(self) -> list[int]:
        return [self.pid] if self.pid else []

    def status(self) -> dict:
        from coldoc_tasks.coldoc_tasks import status

        return status(self.infofile, timeout=30)

    def wait_stored(self, handles: list, timeout: float) -> None:
        # Outcomes are pushed to the submitting client as they are ready; the
        # server's counters say when all ran.  A short pause lets the last
        # pushes land in this process.
        deadline = time.monotonic() + timeout
        while True:
            state = self.status()
            counters = state['counters']
            if not state['tasks_queued'] and not any(q['running'] for q in state['queues']) and \
                    counters['done'] + counters['failed'] >= counters['submitted']:
                time.sleep(0.2)
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f'{self.name}: tasks not all done within {timeout} s')
            time.sleep(0.1)
