"""The ``coldoc`` backend: tasks run by the local coldoc task server.

Clients find the server through its *infofile* (or an address and authkey)::

    from coldoc_tasks.coldoc_tasks import fork_class, tasks_daemon_autostart
    tasks_daemon_autostart('/var/lib/portal/tasks.info')
    f = fork_class(infofile='/var/lib/portal/tasks.info')
    f.run(cmd, *args)
    f.wait()

The functions here control a server: :func:`ping`, :func:`status`,
:func:`shutdown`, :func:`server_pid`, :func:`get_infofile`,
:func:`tasks_server_start` (in this process), :func:`tasks_daemon_start`
(in the background) and :func:`tasks_daemon_autostart`.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from .base import ForkBase, new_task_id
from .client import PushSlot, ServerConnection, control_request, get_connection
from .coldoc_stop import stop_server
from .daemon import ColdocTasksStartError, tasks_daemon_start
from .daemon import tasks_daemon_autostart as _autostart_pid
from .exceptions import (
    ColdocTasksBackendUnavailableError,
    ColdocTasksConnectionError,
    ColdocTasksException,
    ColdocTasksMessageSizeError,
    ColdocTasksProcessLookupError,
    ColdocTasksTimeoutError,
    ColdocTasksUnknownTaskError,
    ColdocTasksUsageError,
)
from .outcome import Outcome, dumps_call, loads_outcome
from .server import worker_process
from .server.infofile import InfofileError, PathLike, lock_holder, read_infofile, start_lock
from .server.main import ColdocTasksServerRunningError, run_server
from .server.workers import ANY_QUEUE, DEFAULT_QUEUE, QueueConfig, undeclared_queue_message

__all__ = [
    'ColdocFork', 'fork_class', 'get_fork_class', 'ping', 'status', 'shutdown', 'server_pid', 'test', 'get_infofile',
    'tasks_server_start', 'tasks_daemon_start', 'tasks_daemon_autostart', 'tasks_daemon_django_autostart',
    'tasks_server_readinfo', 'task_server_check', 'QueueConfig', 'ColdocTasksServerRunningError',
    'ColdocTasksStartError', 'AUTOSTART_OPTIONS_ENV',
]

logger = logging.getLogger(__name__)

get_infofile = read_infofile

# infofile path -> (socket path, authkey) as last read in this process
_infofile_addresses: dict[str, tuple[str, bytes]] = {}


def _server_address(infofile: PathLike | None, address: str | None, authkey: bytes | str | None
                    ) -> tuple[str, bytes]:
    if address is not None:
        if authkey is None:
            raise ColdocTasksUsageError('an address needs its authkey')
        return os.fsdecode(address), authkey.encode('utf-8') if isinstance(authkey, str) else bytes(authkey)
    if infofile is None:
        raise ColdocTasksUsageError('the coldoc backend needs an infofile, or an address and an authkey')
    info = read_infofile(infofile)
    return info['socket'], info['authkey']


class ColdocFork(ForkBase):
    """Run each task on a worker of a coldoc task server.

    The full contract of :class:`~coldoc_tasks.base.ForkBase`.  Give the
    server's ``infofile``, or its ``address`` (socket path) and ``authkey``
    (also by position, as 0.2 took them: ``fork_class(address, authkey)``).
    ``queue`` names the server queue (``None`` or ``True``: the default
    queue).  A pickled fork object can ``wait`` from any process of the
    machine; it carries the infofile path, or the address and the key.
    """

    fork_type = 'coldoc'
    #: the infofile used when none is given (set on classes made by :func:`get_fork_class`)
    default_infofile: str | None = None

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None, *,
                 infofile: PathLike | None = None, address: str | None = None, authkey: bytes | str | None = None):
        if isinstance(use_fork, (str, bytes, os.PathLike)) and isinstance(timeout, (bytes, str)):
            # 0.2's order, fork_class(address, authkey): a path and a key are never a flag and a timeout
            if address is not None or authkey is not None:
                raise ColdocTasksUsageError('give the address and the authkey either by position or by keyword')
            address, authkey, use_fork, timeout = os.fsdecode(use_fork), timeout, True, None
        if queue is None or queue is True:
            queue = DEFAULT_QUEUE
        elif not isinstance(queue, str) or not queue:
            raise ColdocTasksUsageError(f'queue must be a queue name, None or True, not {queue!r}')
        super().__init__(use_fork=use_fork, timeout=timeout, queue=queue)
        if infofile is None and address is None:
            infofile = self.default_infofile
        self.infofile = None if infofile is None else os.fspath(infofile)
        self._address = address
        self._authkey = authkey
        self._push: PushSlot | None = None
        if use_fork and (self.infofile is None or self.infofile not in _infofile_addresses):
            address = _server_address(self.infofile, address, authkey)  # fail now on a missing infofile or key
            if self.infofile is not None:
                _infofile_addresses[self.infofile] = address

    def _connection(self) -> ServerConnection:
        if self.infofile is None:
            return get_connection(*_server_address(None, self._address, self._authkey))
        # The infofile is read once per process, not per task; it is read
        # again only when its server cannot be reached (it may have restarted).
        address = _infofile_addresses.get(self.infofile)
        if address is not None:
            try:
                return get_connection(*address)
            except ColdocTasksConnectionError:
                pass
        address = _infofile_addresses[self.infofile] = _server_address(self.infofile, None, None)
        return get_connection(*address)

    def _submit(self, cmd: Callable, args: tuple, kwargs: dict) -> str:
        call = dumps_call(cmd, args, kwargs)
        connection = self._connection()
        if len(call) > connection.max_message_size:
            raise ColdocTasksMessageSizeError(
                f'the call of {self.cmd_name} pickles to {len(call)} bytes, over the limit of '
                f'{connection.max_message_size} bytes of a message of the task server (its max_message_size)')
        if connection.queues and self.queue not in connection.queues and ANY_QUEUE not in connection.queues:
            raise ColdocTasksUsageError(undeclared_queue_message(self.queue, connection.queues))
        task_id = new_task_id()
        waiter = worker_process.CURRENT_TASK_ID
        # Inside a worker, wait() must tell the server it blocks (so that the
        # slot is lent): no push there, an explicit wait request instead.
        if waiter is None:
            self._push = connection.push_slots[task_id] = PushSlot()
        try:
            connection.send(('submit', task_id, self.queue, self.cmd_name, waiter, waiter is None), call)
        except BaseException:
            connection.push_slots.pop(task_id, None)
            self._push = None
            raise
        return task_id

    def _collect(self, timeout: float | None) -> Outcome:
        slot = self._push
        if slot is not None and slot.pid != os.getpid():
            # Inherited through fork(): only the parent's connection is fed
            # with the push; ask the server instead.
            slot = self._push = None
        if slot is not None:
            if not slot.latch.acquire(timeout=-1 if timeout is None else timeout):
                raise self._timeout_error(timeout)
            slot.latch.release()
            if slot.message is None:
                return Outcome(exception=ColdocTasksProcessLookupError(
                    f'task {self.task_id}: the task server went away while waiting'))
            return self._decode(slot.message, slot.body)
        try:
            connection = self._connection()
        except (ColdocTasksConnectionError, InfofileError) as exc:
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server is gone ({exc})'))
        late = connection.late_results.pop(self.task_id, None)
        try:
            if late is not None:
                message, body = late
            else:
                message, body = connection.request(('wait', self.task_id, worker_process.CURRENT_TASK_ID),
                                                   timeout=timeout, on_timeout=('unwait',))
        except ColdocTasksTimeoutError:
            raise self._timeout_error(timeout) from None
        except ColdocTasksConnectionError as exc:
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server went away while waiting ({exc})'))
        return self._decode(message, body)

    @staticmethod
    def _decode(message: tuple, body: bytes) -> Outcome:
        if len(message) == 3:
            return loads_outcome(body)
        return Outcome(exception=ColdocTasksProcessLookupError(message[3]))

    def _terminate(self) -> None:
        if self._push is not None and self._push.message is not None:
            return  # it has ended: its outcome is here
        with contextlib.suppress(ColdocTasksUnknownTaskError):  # it ended and was collected
            self._connection().request(('terminate', self.task_id), timeout=30)

    def __getstate__(self) -> dict:
        if self.task_id is not None and self._outcome is None and not self._inline:
            # Ask the server to keep the outcome for the copy; as the reply
            # comes after our submit was handled, the server knows the task
            # before any other process can ask for it.
            with contextlib.suppress(ColdocTasksUnknownTaskError):
                self._connection().request(('share', self.task_id), timeout=30)
            if self._push is not None and self._push.message is not None:
                # It ended before the share: the copy takes the outcome along.
                with contextlib.suppress(ColdocTasksException):
                    self.wait(timeout=0, raise_exception=False)
        state = super().__getstate__()
        state['_push'] = None
        return state

    def __reduce__(self):
        # Classes made by get_fork_class are not importable: rebuild as ColdocFork.
        return (_rebuild, (self.__getstate__(),))


def _rebuild(state: dict) -> ColdocFork:
    fork = ColdocFork.__new__(ColdocFork)
    fork.__setstate__(state)
    return fork


fork_class = ColdocFork


class _BoundForkClass(type):
    """Metaclass of the classes :func:`get_fork_class` returns, so that they
    can be pickled (for nested tasks) as a call that makes them again."""


def _reduce_bound_class(cls: type) -> tuple:
    return bind_fork_class, (cls.default_infofile,)


copyreg.pickle(_BoundForkClass, _reduce_bound_class)


@functools.lru_cache(maxsize=64)
def bind_fork_class(infofile: str) -> type[ColdocFork]:
    """A :class:`ColdocFork` subclass whose instances use ``infofile``."""
    return _BoundForkClass('ColdocFork', (ColdocFork,), {
        'default_infofile': infofile, '__module__': __name__, '__qualname__': 'ColdocFork',
        '__doc__': f'ColdocFork bound to the task server of {infofile}.'})


def get_fork_class(infofile: PathLike | None = None, celeryconfig: object = None,
                   timeout: float = 1.0) -> type[ColdocFork]:
    """The ``coldoc`` fork class bound to ``infofile``, if its server answers
    now; else raise :class:`ColdocTasksBackendUnavailableError` saying why."""
    if infofile is None:
        raise ColdocTasksBackendUnavailableError('no infofile given')
    infofile = os.path.abspath(os.fspath(infofile))
    try:
        ping(infofile, timeout=timeout, raise_errors=True)
    except (InfofileError, ColdocTasksConnectionError, ColdocTasksTimeoutError) as exc:
        raise ColdocTasksBackendUnavailableError(str(exc)) from None
    return bind_fork_class(infofile)


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
        return _server_address(self.infofile, self.address, self.authkey)

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


def _control(target: _Target | PathLike, message: tuple, timeout: float) -> Any:
    if not isinstance(target, _Target):
        target = _Target(target)
    return control_request(*target.resolve(), message, timeout)


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
        return _control(target, ('ping',), timeout)[2]
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
        return _control(target, ('status',), timeout)[2]
    except _UNREACHABLE as exc:
        if not target.legacy:
            raise
        logger.warning('no status from %s: %s', target, exc)
        return None


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
    from .selfcheck import run_checks

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
    :func:`coldoc_tasks.coldoc_stop.stop_server` says how it went.
    """
    target, rest = _target(infofile, args, address, authkey)
    if rest:
        grace, *more = rest
        timeout = more[0] if more else timeout
    if not target.legacy:
        return stop_server(target.infofile, grace=grace, timeout=timeout).stopped
    try:
        connection = ServerConnection(*target.resolve())
    except (InfofileError, ColdocTasksConnectionError):
        return False
    try:
        connection.request(('shutdown', grace), timeout=timeout)
        pid = connection.server_pid
    finally:
        connection.close()
    _wait_exit(pid, timeout)
    return True


def _wait_exit(pid: int, timeout: float) -> None:
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise ColdocTasksTimeoutError(f'the task server (pid {pid}) did not exit within {timeout} s')
    finally:
        os.close(pidfd)


def tasks_server_start(infofile: PathLike, socket_path: PathLike | None = None,
                       authkey: bytes | str | None = None, **options: Any) -> None:
    """Run a server for ``infofile`` in this process until it stops (see
    :func:`coldoc_tasks.server.main.run_server` for the options)."""
    run_server(infofile, socket_path, authkey, **options)


# -- coldoc_tasks 0.2's starting functions ------------------------------------------

#: The environment variable of :func:`tasks_daemon_autostart`'s default
#: ``opt``: comma-separated keywords among ``nocheck``, ``noautostart``,
#: ``force`` (other words, such as the Django flags, are ignored here).
AUTOSTART_OPTIONS_ENV = 'COLDOC_TASKS_AUTOSTART_OPTIONS'
_AUTOSTART_KEYWORDS = ('nocheck', 'noautostart', 'force')


def tasks_server_readinfo(infofile: PathLike) -> list:
    """``[address, authkey, pid, other]`` from ``infofile``: the socket path,
    the key (bytes), the pid of the server that wrote it (maybe gone since)
    and a dict of the other fields.  Raise :class:`InfofileError` if it is
    missing or not an infofile."""
    info = dict(read_infofile(infofile))
    return [info.pop('socket'), info.pop('authkey'), info.pop('pid'), info]


def task_server_check(infofile: PathLike) -> tuple[bool, str | None, bytes | None, int | None]:
    """``(ok, address, authkey, pid)``: ``ok`` is True if the server of
    ``infofile`` answers now (then ``pid`` is its pid); with no readable
    infofile, ``(False, None, None, None)``."""
    try:
        address, authkey, pid, _ = tasks_server_readinfo(infofile)
    except InfofileError as exc:
        logger.debug('task_server_check: %s', exc)
        return False, None, None, None
    answer = ping(address=address, authkey=authkey, timeout=2.0, warn=False)
    if answer is None:
        return False, address, authkey, pid
    return True, address, authkey, answer['pid']


def _autostart_keywords(opt: str | Iterable[str] | None) -> set[str]:
    if opt is None:
        opt = os.environ.get(AUTOSTART_OPTIONS_ENV, '')
    words = opt.split(',') if isinstance(opt, str) else list(opt)
    return {word.strip() for word in words} & set(_AUTOSTART_KEYWORDS)


def _pythonpath_list(pythonpath: Any) -> list[str]:
    """0.2's ``pythonpath``: a PYTHONPATH-style str, a Path, bytes, or a list of them."""
    if pythonpath is None:
        return []
    if isinstance(pythonpath, (str, bytes)):
        pythonpath = os.fsdecode(pythonpath).split(os.pathsep)
    elif isinstance(pythonpath, os.PathLike):
        pythonpath = [pythonpath]
    return [os.fsdecode(os.fspath(path)) for path in pythonpath if path]


def temporary_logfile(directory: PathLike) -> str:
    """A new, empty log file (mode 0600) in ``directory``, for a server
    started with ``logfile=True``."""
    fd, path = tempfile.mkstemp(prefix='coldoc_tasks_', suffix='.log', dir=os.fspath(directory))
    os.close(fd)
    return path


def tasks_daemon_autostart(infofile: PathLike, address: PathLike | bytes | None = None,
                           authkey: bytes | str | None = None, *, tempdir: PathLike | None = None,
                           logfile: PathLike | bool | None = None, pythonpath: Any = (), cwd: PathLike | None = None,
                           opt: str | Iterable[str] | None = None, force: bool | None = False, timeout: float = 30.0,
                           env: dict | None = None, server_module: str | None = None, **options: Any
                           ) -> tuple[int | bool | None, str | BaseException]:
    """Make sure a server serves ``infofile``, as coldoc_tasks 0.2 did: start
    one in the background unless one answers.

    Return ``(pid, infofile)``: the pid of the server that answers or was
    started; ``(None, infofile)`` if none answers and starting was not
    allowed (``noautostart``); ``(False, error)`` if it could not be started
    (the error is logged too).  Safe when many processes call it at once.

    ``address`` and ``authkey``: the socket and key of a new server (default:
    the previous ones kept in the infofile, else a fresh socket in a private
    directory and a random key).  ``logfile``: a path, or True for a new
    temporary log file beside the infofile.  ``pythonpath``: where the server
    finds the code of the tasks (a PYTHONPATH-style str or a list).
    ``tempdir``: the directory for the server's temporary files (its socket
    directory included).  ``cwd``: the server's working directory.
    ``opt``: keywords (a comma-separated str or a list; default
    ``$COLDOC_TASKS_AUTOSTART_OPTIONS``): ``nocheck`` (do not ask first
    whether a server answers), ``noautostart`` (never start one), ``force``
    (accepted for compatibility: a stale lock or socket never stops a start
    here).  ``timeout``: seconds to wait for a new server to serve.  Other
    keywords are server options (``queues``, ``result_retention``, ...) as
    for :func:`tasks_daemon_start`.
    """
    given, infofile = os.fspath(infofile), os.path.abspath(os.fspath(infofile))
    keywords = _autostart_keywords(opt)
    if force or 'force' in keywords:
        logger.debug('autostart of %s: "force" needs no action, stale files are replaced safely', infofile)
    try:
        if 'noautostart' in keywords:
            answer = ping(infofile)
            return (None if answer is None else answer['pid']), given
        if logfile is True:
            logfile = temporary_logfile(os.path.dirname(infofile))
        elif logfile is False:
            logfile = None
        environment = dict(os.environ if env is None else env)
        if tempdir is not None:
            for name in ('TMPDIR', 'TEMP', 'TMP'):
                environment[name] = os.fspath(tempdir)
        start_options: dict[str, Any] = dict(options, logfile=logfile, pythonpath=_pythonpath_list(pythonpath),
                                             env=environment, timeout=timeout, cwd=cwd)
        if server_module is not None:
            start_options['server_module'] = server_module
        socket_path = None if address is None else os.fsdecode(address)
        if 'nocheck' in keywords:
            with start_lock(infofile):
                pid = tasks_daemon_start(infofile, socket_path, authkey, **start_options)
        else:
            pid = _autostart_pid(infofile, socket_path, authkey, **start_options)
    except (ColdocTasksException, OSError) as exc:
        logger.error('cannot autostart a task server for %s: %s', infofile, exc)
        return False, exc
    return pid, given


def tasks_daemon_django_autostart(settings: Any, **kwargs: Any) -> tuple[int | bool | None, str | BaseException]:
    """:func:`tasks_daemon_autostart` with everything read from the Django
    ``settings`` (``COLDOC_TASKS_INFOFILE``, ``_SOCKET``, ``_PASSWORD``,
    ``_LOGFILE``, ``_PYTHONPATH``); the server sets Django up first.  As in
    0.2, on success ``settings.COLDOC_TASKS_COLDOC_PROC`` is set to the pid
    and ``settings.COLDOC_TASKS_INFOFILE`` to the infofile.  Keywords
    override the settings."""
    from .django_support import SERVER_MODULE, read_settings, server_environment

    conf = read_settings(settings)
    kwargs.setdefault('address', conf.socket)
    kwargs.setdefault('authkey', conf.password)
    kwargs.setdefault('logfile', conf.logfile)
    kwargs.setdefault('pythonpath', conf.pythonpath)
    kwargs.setdefault('env', server_environment(conf))
    kwargs.setdefault('server_module', SERVER_MODULE)
    infofile = kwargs.pop('infofile', conf.infofile)
    proc, info = tasks_daemon_autostart(infofile, **kwargs)
    if proc:
        settings.COLDOC_TASKS_COLDOC_PROC = proc
        settings.COLDOC_TASKS_INFOFILE = info
    return proc, info
