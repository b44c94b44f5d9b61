"""Stopping a coldoc task server, even one that does not answer.

First the server is asked (a ``shutdown`` request: running tasks get their
grace).  If it does not answer, or does not exit in time, the infofile's
server is stopped with signals, but only once its pid is known to be that
server's: the kernel must say that this pid holds the infofile's lock now
(``/proc/locks``), and the lock file must name it.  Then, through a pidfd
(so that a recycled pid can never be hit): SIGTERM (and SIGCONT, for a
stopped process to act on it), and SIGKILL if it has not exited after the
grace.

An infofile of coldoc_tasks 0.2 is recognised: its server is asked to shut
down (``shutdown__``), then sent SIGTERM if it does not go.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterator

from ..durations import check_seconds
from ..exceptions import (
    ColdocTasksConnectionError,
    ColdocTasksException,
    ColdocTasksStopPermissionError,
    ColdocTasksTimeoutError,
    ColdocTasksUsageError,
)
from .client import ServerConnection
from .infofile import (
    InfofileMissingError,
    LegacyInfofileError,
    PathLike,
    lock_path,
    read_infofile,
    verified_lock_holder,
)
from .legacy import legacy_request_shutdown, legacy_server_answers
from .messages import Shutdown, Status

logger = logging.getLogger(__name__)

#: Seconds a server gets to answer before signals are used.
ANSWER_TIMEOUT = 5.0
#: Seconds allowed for a process to vanish after SIGKILL.
KILL_WAIT = 10.0
#: What is added to the grace before SIGKILL: the server's own steps (terminating tasks) take that long.
DEFAULT_STOP_GRACE = 10.0
DEFAULT_TERMINATE_GRACE = 2.0


@dataclasses.dataclass
class StopReport:
    """What :func:`stop_server` did.

    ``how``: ``'none'`` (no server was running), ``'request'`` (it stopped
    when asked), ``'SIGTERM'`` or ``'SIGKILL'`` (the signal that stopped
    it).  ``legacy``: it was a server of coldoc_tasks 0.2.
    """

    pid: int | None
    how: str
    legacy: bool = False
    reason: str = ''

    @property
    def stopped(self) -> bool:
        return self.how != 'none'

    def __str__(self) -> str:
        what = 'coldoc_tasks 0.2 server' if self.legacy else 'coldoc task server'
        if self.how == 'none':
            return f'no {what} runs' + (f' ({self.reason})' if self.reason else '')
        if self.how == 'request':
            return f'{what} (pid {self.pid}) stopped'
        return f'{what} (pid {self.pid}) {self.reason}; stopped with {self.how}'


def stop_server(infofile: PathLike, grace: float | None = None, timeout: float = 60.0,
                answer_timeout: float = ANSWER_TIMEOUT, on_wait: Callable[[str], object] | None = None) -> StopReport:
    """Stop the server of ``infofile`` and wait until it has exited.

    Running tasks get ``grace`` seconds (default: the server's) to finish.
    A server that does not answer within ``answer_timeout``, or has not
    exited within ``timeout`` after the request, is stopped with signals
    (see the module's docstring).  Raise
    :class:`ColdocTasksStopPermissionError` if this user may not stop it,
    :class:`ColdocTasksTimeoutError` if it could not be stopped, and
    :class:`~.server.infofile.InfofileError` for an infofile that cannot
    be read.

    ``on_wait``, if given, is called with a sentence saying what is waited
    for, each time a wait begins (the command line shows it on a terminal).
    """
    say = on_wait or (lambda text: None)
    try:
        check_seconds('the stop grace', grace, none_ok=True)
    except (TypeError, ValueError) as exc:
        raise ColdocTasksUsageError(str(exc)) from None
    answer_timeout = min(answer_timeout, timeout)
    try:
        info = read_infofile(infofile)
    except InfofileMissingError as exc:
        return StopReport(None, 'none', reason=str(exc))
    except LegacyInfofileError as exc:
        return _stop_legacy(exc.info, grace, timeout, answer_timeout, say)
    deadline = time.monotonic() + timeout
    say(f'asking the task server (pid {info["pid"]}) to stop...')
    try:
        connection = ServerConnection(info['socket'], info['authkey'], connect_timeout=answer_timeout)
    except ColdocTasksConnectionError as exc:
        why = f'did not answer ({exc})'
    else:
        try:
            running = _running_tasks(connection, answer_timeout) if on_wait else 0
            connection.request(Shutdown, grace, timeout=answer_timeout)
            pid = connection.server_pid
        except (ColdocTasksConnectionError, ColdocTasksTimeoutError) as exc:
            why = f'did not answer ({exc})'
        else:
            server_grace = grace if grace is not None else info.get('stop_grace') or DEFAULT_STOP_GRACE
            say(f'waiting for the task server (pid {pid}) to finish {running} running task'
                f'{"" if running == 1 else "s"} (grace {server_grace:g} s)...' if running else
                f'waiting for the task server (pid {pid}) to exit...')
            if _wait_exit(pid, deadline - time.monotonic()):
                return StopReport(pid, 'request')
            why = f'did not exit within {timeout:g} s of the stop request'
        finally:
            connection.close()
    try:
        pid = verified_lock_holder(infofile)
    except PermissionError as exc:
        raise ColdocTasksStopPermissionError(
            f'the task server of {infofile} {why}, and its lock {exc.filename or lock_path(infofile)} cannot be '
            f'read: permission denied (it belongs to another user)') from None
    if pid is None:
        return StopReport(None, 'none', reason=why)
    kill_after = ((grace if grace is not None else info.get('stop_grace') or DEFAULT_STOP_GRACE)
                  + (info.get('terminate_grace') or DEFAULT_TERMINATE_GRACE) + 1.0)
    logger.warning('the task server (pid %d) of %s %s: stopping it with signals', pid, infofile, why)
    with _pidfd(pid) as pidfd:
        # Checked again once the pidfd is open: the signals go to the
        # process that holds the lock, never to a recycled pid.
        if pidfd is not None and verified_lock_holder(infofile) != pid:
            raise ColdocTasksException(f'pid {pid} no longer holds the lock of {infofile}; not signalled')
        say(f'the task server (pid {pid}) {why}: sent SIGTERM, waiting up to {kill_after:g} s before SIGKILL...')
        how = _signal_stop(pidfd, pid, kill_after)
    return StopReport(pid, how, reason=why)


def _running_tasks(connection: ServerConnection, timeout: float) -> int:
    """How many tasks the server runs (only to say what a stop waits for)."""
    answer = connection.request(Status, timeout=timeout)[0].value
    return sum(queue['running'] for queue in answer['queues'])


def _stop_legacy(info: dict, grace: float | None, timeout: float, answer_timeout: float,
                 say: Callable[[str], object]) -> StopReport:
    pid = legacy_server_answers(info, timeout=answer_timeout)
    if pid is None:
        return StopReport(None, 'none', legacy=True,
                          reason=f'no coldoc_tasks 0.2 server answers at {info["address"]}')
    deadline = time.monotonic() + timeout
    wait = min(timeout, grace if grace is not None else DEFAULT_STOP_GRACE)
    # Its pid came from the server itself, over a connection that proved the
    # key: it is that server, held from now on by a pidfd.
    with _pidfd(pid) as pidfd:
        say(f'asking the coldoc_tasks 0.2 server (pid {pid}) to stop...')
        asked = legacy_request_shutdown(info, timeout=answer_timeout)
        if asked:
            say(f'waiting for the coldoc_tasks 0.2 server (pid {pid}) to exit (up to {wait:g} s)...')
        if not asked:
            why = 'did not take the stop request'
        elif _exited(pidfd, wait):
            return StopReport(pid, 'request', legacy=True)
        else:
            why = f'did not exit within {wait:g} s of the stop request'
        say(f'the coldoc_tasks 0.2 server (pid {pid}) {why}: sent SIGTERM...')
        how = _signal_stop(pidfd, pid, max(1.0, deadline - time.monotonic()), kill=False)
    return StopReport(pid, how, legacy=True, reason=why)


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    """A pidfd for ``pid`` (``None`` if it has exited), closed at the end."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield pidfd
    finally:
        os.close(pidfd)


def _exited(pidfd: int | None, timeout: float) -> bool:
    return pidfd is None or bool(select.select([pidfd], [], [], max(0.0, timeout))[0])


def _signal_stop(pidfd: int | None, pid: int, kill_after: float, kill: bool = True) -> str:
    """SIGTERM (with SIGCONT) the process of ``pidfd``, then SIGKILL it if
    it has not exited after ``kill_after`` seconds; the signal that stopped it."""
    if pidfd is None:
        return 'SIGTERM'  # it exited meanwhile
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        signal.pidfd_send_signal(pidfd, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
    except ProcessLookupError:
        return 'SIGTERM'
    except PermissionError as exc:
        raise ColdocTasksStopPermissionError(
            f'no permission to signal the task server (pid {pid}): {exc.strerror}; it belongs to another '
            f'user (stop it as that user, or as root)') from None
    if _exited(pidfd, kill_after):
        return 'SIGTERM'
    if not kill:
        raise ColdocTasksTimeoutError(f'the server (pid {pid}) did not exit within {kill_after:g} s of SIGTERM')
    logger.warning('the task server (pid %d) did not exit within %g s of SIGTERM: SIGKILL', pid, kill_after)
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    if not _exited(pidfd, KILL_WAIT):
        raise ColdocTasksTimeoutError(f'the task server (pid {pid}) did not exit within {KILL_WAIT:g} s of SIGKILL')
    return 'SIGKILL'


def _wait_exit(pid: int, timeout: float) -> bool:
    """True if process ``pid`` has exited (or exits within ``timeout``)."""
    with _pidfd(pid) as pidfd:
        return _exited(pidfd, timeout)
