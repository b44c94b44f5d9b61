"""Tasks shaped like ColDoc's: they receive the refreshing chooser as an
argument and run their subtasks with it, waiting without a timeout."""

from __future__ import annotations

import os

#: The fork types the callback saw in this process, in order.
CHOSEN: list[str] = []


def record_choice(fork_class) -> None:
    """A callback as ColDoc writes one: one argument, reads ``fork_type``."""
    CHOSEN.append(fork_class.fork_type)


def chain(chooser, depth: int) -> list[str]:
    """Run ``chain(chooser, depth - 1)`` as a subtask; return the fork types
    seen on the way down."""
    if depth == 0:
        return [chooser.fork_type]
    f = chooser()
    f.run(chain, chooser, depth - 1)
    return [chooser.fork_type, *f.wait()]


def fan_out(chooser, n: int) -> list[int]:
    """Run ``n`` subtasks at once with ``use_fork`` as ColDoc decides it."""
    forks = []
    for j in range(n):
        f = chooser(use_fork=n > 1)
        f.run(pow, j, 2)
        forks.append(f)
    return [f.wait() for f in forks]


def where_am_i(chooser) -> dict:
    """What the chooser says inside a worker (a reused worker's earlier
    tasks are forgotten first)."""
    CHOSEN.clear()
    return {'pid': os.getpid(), 'fork_type': chooser.fork_type, 'can_fork': chooser().can_fork(),
            'callback_saw': list(CHOSEN)}
