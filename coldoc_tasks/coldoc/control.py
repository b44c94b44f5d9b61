"""Controlling a coldoc task server from another process: :func:`ping`,
:func:`status`, :func:`terminate_task`, :func:`server_pid`, :func:`test` (a self-check) and
:func:`shutdown`; :func:`get_infofile` reads what the server wrote."""

from __future__ import annotations

import functools
import logging
import os
import select
from collections.abc import Callable
from typing import Any

from ..durations import check_seconds
from ..exceptions import ColdocTasksConnectionError, ColdocTasksTimeoutError, ColdocTasksUsageError
from ..selfcheck import run_checks
from .client import ServerConnection, control_request
from .fork import ColdocFork, bind_fork_class, server_address
from .infofile import InfofileError, PathLike, lock_holder, read_infofile
from .messages import Message, Ping, Shutdown, Status, Terminate
from .stop import stop_server

__all__ = ['ping', 'status', 'terminate_task', 'server_pid', 'test', 'shutdown', 'get_infofile']

logger = logging.getLogger(__name__)

get_infofile = read_infofile

# -- control -----------------------------------------------------------------------
#
# Each control function names its server in one of two ways: by the infofile,
# ``ping('/path/to/infofile')``, or as coldoc_tasks 0.2 did, by the socket
# address and the authkey, ``ping(address, authkey)`` (or ``address=...,
# authkey=...``).  The rule that tells them apart: a second positional
# argument that is bytes or a str is an authkey (no timeout or grace is a
# str); then the first one is the address.


class _Target:
    """The server a control function talks to: an infofile, or an address and key."""

    __slots__ = ('infofile', 'address', 'authkey')

    def __init__(self, infofile: PathLike | None, address: str | None = None, authkey: bytes | None = None):
        self.infofile = infofile
        self.address = address
        self.authkey = authkey

    @property
    def legacy(self) -> bool:
        """Named as 0.2 named it: by address and authkey."""
        return self.infofile is None

    def resolve(self) -> tuple[str, bytes]:
        return server_address(self.infofile, self.address, self.authkey)

    def __str__(self) -> str:
        return os.fspath(self.infofile) if self.infofile is not None else f'the server at {self.address}'


def _target(first: Any, rest: tuple, address: Any, authkey: Any) -> tuple[_Target, tuple]:
    """Split ``(first, *rest)`` into the target and the remaining positional arguments."""
    if rest and isinstance(rest[0], (bytes, bytearray, str)):
        if address is not None or authkey is not None:
            raise ColdocTasksUsageError('give the address and the authkey either by position or by keyword')
        address, authkey, rest, first = first, rest[0], rest[1:], None
    elif address is not None or authkey is not None:
        if first is not None:
            raise ColdocTasksUsageError('give either an infofile or an address and an authkey, not both')
        if address is None or authkey is None:
            raise ColdocTasksUsageError('an address needs its authkey')
    elif first is None:
        raise ColdocTasksUsageError('name the task server by its infofile, or by its address and authkey')
    if address is not None:
        address = os.fsdecode(address)
        authkey = authkey.encode('utf-8') if isinstance(authkey, str) else bytes(authkey)
    return _Target(first, address, authkey), rest


def _control(target: _Target | PathLike, kind: type[Message], timeout: float) -> Any:
    if not isinstance(target, _Target):
        target = _Target(target)
    return control_request(*target.resolve(), kind, timeout=timeout)


_UNREACHABLE = (InfofileError, ColdocTasksConnectionError, ColdocTasksTimeoutError)


def ping(infofile: PathLike | None = None, *args: Any, address: str | None = None, authkey: bytes | str | None = None,
         timeout: float = 2.0, raise_errors: bool = False, warn: bool | None = None) -> dict | None:
    """Ask the server if it is alive: a dict with its ``pid``, ``version``
    and ``protocol`` (true), or ``None`` if it does not answer (with
    ``raise_errors``, the error saying why; with ``warn``, it is logged).

    ``ping(infofile, timeout=2.0, raise_errors=False)``, or 0.2's form
    ``ping(address, authkey, warn=True)``.
    """
    target, rest = _target(infofile, args, address, authkey)
    if target.legacy:
        warn = rest[0] if rest else (True if warn is None else warn)
    elif rest:
        timeout, *more = rest
        raise_errors = more[0] if more else raise_errors
    try:
        return _control(target, Ping, timeout)
    except _UNREACHABLE as exc:
        if raise_errors:
            raise
        if warn:
            logger.warning('no answer from %s: %s', target, exc)
        return None


def status(infofile: PathLike | None = None, *args: Any, address: str | None = None,
           authkey: bytes | str | None = None, timeout: float = 5.0) -> dict | None:
    """The server's status: pid, version, uptime, queues, live tasks, counters.

    ``status(infofile, timeout=5.0)`` raises the error if the server does not
    answer; 0.2's form ``status(address, authkey)`` logs it and returns ``None``.
    """
    target, rest = _target(infofile, args, address, authkey)
    if rest:
        (timeout,) = rest
    try:
        return _control(target, Status, timeout)
    except _UNREACHABLE as exc:
        if not target.legacy:
            raise
        logger.warning('no status from %s: %s', target, exc)
        return None


def terminate_task(infofile: PathLike, task_id: str, timeout: float = 5.0) -> str:
    """Terminate the task ``task_id`` of the server of ``infofile``, as
    ``f.terminate()`` does (a queued task is cancelled, a running one gets
    SIGTERM, then SIGKILL after the grace); return the task's state after
    the request (``terminated`` comes once its worker is gone).  A task the
    server does not know raises :class:`ColdocTasksUnknownTaskError`."""
    return control_request(*_Target(infofile).resolve(), Terminate, task_id, timeout=timeout)


def server_pid(infofile: PathLike | None = None, *args: Any, address: str | None = None,
               authkey: bytes | str | None = None) -> int | None:
    """The pid of the live server, or ``None``: ``server_pid(infofile)`` (the
    holder of the infofile's lock) or 0.2's ``server_pid(address, authkey)``
    (as the server answers)."""
    target, rest = _target(infofile, args, address, authkey)
    if not target.legacy:
        return lock_holder(target.infofile)
    answer = ping(address=target.address, authkey=target.authkey, warn=bool(rest[0]) if rest else True)
    return None if answer is None else answer['pid']


def test(infofile: PathLike | None = None, *args: Any, address: str | None = None, authkey: bytes | str | None = None,
         print_: Callable[[str], object] = print) -> int:
    """Run the self-check of the fork-class contract against the live
    server; print a line per check with ``print_``; return the number of
    failures (0: all went well).  ``test(infofile)`` or 0.2's
    ``test(address, authkey, print_=print)``."""

    target, rest = _target(infofile, args, address, authkey)
    if rest:
        (print_,) = rest
    if target.legacy:
        make_fork = functools.partial(ColdocFork, address=target.address, authkey=target.authkey)
    else:
        make_fork = bind_fork_class(os.path.abspath(os.fspath(target.infofile)))
    return run_checks(make_fork, out=print_)


def shutdown(infofile: PathLike | None = None, *args: Any, address: str | None = None,
             authkey: bytes | str | None = None, grace: float | None = None, timeout: float = 60.0) -> bool:
    """Stop the server: running tasks get ``grace`` seconds (default: the
    server's) to finish.  Wait until it has exited; return False if no
    server was running.  ``shutdown(infofile, grace=None, timeout=60.0)`` or
    0.2's ``shutdown(address, authkey)``.

    Named by its infofile, a server that does not answer (stopped, wedged)
    is stopped with signals once it is known to be that server;
    :func:`coldoc_tasks.coldoc.stop.stop_server` says how it went.
    """
    target, rest = _target(infofile, args, address, authkey)
    if rest:
        grace, *more = rest
        timeout = more[0] if more else timeout
    if not target.legacy:
        return stop_server(target.infofile, grace=grace, timeout=timeout).stopped
    try:
        check_seconds('the stop grace', grace, none_ok=True)
    except (TypeError, ValueError) as exc:
        raise ColdocTasksUsageError(str(exc)) from None
    try:
        connection = ServerConnection(*target.resolve())
    except (InfofileError, ColdocTasksConnectionError):
        return False
    try:
        connection.request(Shutdown, grace, timeout=timeout)
        pid = connection.server_pid
    finally:
        connection.close()
    _wait_exit(pid, timeout)
    return True


def _wait_exit(pid: int, timeout: float) -> None:
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise ColdocTasksTimeoutError(f'the task server (pid {pid}) did not exit within {timeout} s')
    finally:
        os.close(pidfd)


