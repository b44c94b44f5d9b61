"""The adapter interface every system implements."""

from __future__ import annotations

import time
from typing import Any


class Unavailable(Exception):
    """The system cannot run here (a missing package, service or backend);
    the message says why, and the report shows it."""


class Adapter:
    """A system under test, driven as ``h = submit(task, *args)`` then
    ``collect(h, timeout)``.

    ``task`` is ``'noop'`` (returns its argument), ``'burn'`` (spends its
    argument in ms of CPU) or ``'nested'`` (``depth, timeout``: runs itself
    one level down as a child task and waits for it).
    """

    #: the system's name, its label in the report, and whether it is ours or a peer
    name = ''
    label = ''
    kind = 'peer'
    #: how concurrent clients are made: 'process' (forked) or 'thread' (one shared pool)
    clients = 'process'
    #: why nested tasks are not run, if they are not
    nested_unsupported: str | None = None
    #: why memory is not measured, if it is not
    memory_unsupported: str | None = None
    #: share of the W2 and W4 task counts this system runs, if it is too slow
    #: for the full counts within the time of a run (the report shows the counts)
    w2_fraction = 1.0
    w4_fraction = 1.0

    def start(self, workdir: str) -> None:
        """Start the servers and workers the system needs, and wait until
        they serve.  ``workdir`` is a private scratch directory."""

    def stop(self) -> None:
        """Stop everything :meth:`start` started (called even after a failure)."""

    def submit(self, task: str, *args: Any) -> Any:
        """Schedule ``task(*args)``; return a handle for :meth:`collect`."""
        raise NotImplementedError

    def collect(self, handle: Any, timeout: float) -> Any:
        """Block until the task of ``handle`` is done (at most ``timeout``
        seconds); return its value."""
        raise NotImplementedError

    def after_fork(self) -> None:
        """Called in a client process forked from the one that started."""

    def server_pids(self) -> list[int]:
        """Roots of the process tree that holds the system's work and results."""
        return []

    def outside_memory(self) -> int:
        """Bytes the system keeps outside its process tree (Redis keys)."""
        return 0

    def stored_results(self, handles: list) -> int:
        """How many of ``handles`` have a result stored, not yet collected."""
        raise NotImplementedError

    def wait_stored(self, handles: list, timeout: float) -> None:
        """Wait until every task of ``handles`` has finished and its result
        is stored, without collecting any (for the memory workload)."""
        deadline = time.monotonic() + timeout
        while self.stored_results(handles) < len(handles):
            if time.monotonic() > deadline:
                raise TimeoutError(f'{self.name}: results not all stored within {timeout} s')
            time.sleep(0.1)

    def versions(self) -> dict[str, str]:
        """Versions of the packages and services involved."""
        return {}
