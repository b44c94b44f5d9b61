"""Waiting for a process started in the background to exit, whatever
stands for it: a pid, a :class:`multiprocessing.Process`, a
:class:`subprocess.Popen`, or a bool (a process whose pid is not known)."""

from __future__ import annotations

import logging
import os
import select
import subprocess
from typing import Any

from .base import check_timeout

__all__ = ['proc_join']

logger = logging.getLogger('coldoc_tasks.task_utils')


def proc_join(proc: Any, timeout: float | None = None) -> bool:
    """Wait until a server process started in the background has exited
    (after asking it to stop); return True once it has, False if it is still
    running when ``timeout`` seconds pass.

    ``proc`` is what the autostart functions return: a pid (``int``), a
    :class:`multiprocessing.Process`, a :class:`subprocess.Popen`, or a
    bool, which stands for a process whose pid is not known (nothing to wait
    for: True is returned).  A child of this process is also reaped.
    """
    timeout = check_timeout(timeout)
    if isinstance(proc, bool) or proc is None:
        logger.debug('proc_join(%r): no process to wait for', proc)
        return True
    if isinstance(proc, int):
        return _join_pid(proc, timeout)
    if hasattr(proc, 'join') and not isinstance(proc, (str, bytes)):
        proc.join(timeout)
        return not proc.is_alive() if hasattr(proc, 'is_alive') else True
    if hasattr(proc, 'wait'):
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    raise TypeError(f'proc_join() needs a pid, a Process, a Popen or a bool, not {type(proc).__name__}')


def _join_pid(pid: int, timeout: float | None) -> bool:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        _reap(pid)
        return True
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            return False
    finally:
        os.close(pidfd)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not a child of ours: its parent reaps it
