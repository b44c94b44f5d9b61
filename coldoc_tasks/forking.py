"""Forking children that run tasks, signalling them, and saying how they ended.

Shared by the ``simple`` backend and the coldoc server's workers.
"""

from __future__ import annotations

import os
import signal

_RESET_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def fork_task_process(ignore_sigint: bool = False) -> int:
    """``os.fork()`` for a process that runs tasks.

    The child starts in a process group of its own (so the group can be
    killed with what the task started), with the default action for SIGTERM
    and SIGHUP (SIGINT ignored if ``ignore_sigint``), and with no signal
    wake-up fd.  The signals are blocked across the fork, so a SIGTERM sent
    right after it is not lost to a handler inherited from the parent.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _RESET_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
            except OSError:
                pass
            signal.set_wakeup_fd(-1)
            for signum in _RESET_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            if ignore_sigint:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            try:
                os.setpgid(pid, pid)  # also done by the child: whichever runs first closes the race with killpg
            except OSError:
                pass
        return pid
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def signal_group(pid: int, signum: int) -> None:
    """Send ``signum`` to the process group led by ``pid``, or to ``pid``
    alone if it leads none; a process already gone is not an error."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def describe_wait_status(status: int) -> str:
    """Say in words how a process ended, from its ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f'signal {number}'
        return f'was killed by {name}'
    return f'exited with code {os.waitstatus_to_exitcode(status)}'
