"""The ``coldoc`` fork class: each task runs on a worker of the local coldoc
task server, found through its *infofile* (or an address and authkey)::

    from coldoc_tasks.coldoc.fork import fork_class
    f = fork_class(infofile='/var/lib/portal/tasks.info')
    f.run(cmd, *args)
    f.wait()

:func:`get_fork_class` returns the class bound to an infofile, if its
server answers (what the chooser of :mod:`coldoc_tasks.task_utils` uses).
"""

from __future__ import annotations

import asyncio
import contextlib
import copyreg
import datetime
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from ..aio import threadsafe_future, wait_future
from ..base import ForkBase, new_task_id
from ..exceptions import (
    ColdocTasksBackendUnavailableError,
    ColdocTasksConnectionError,
    ColdocTasksException,
    ColdocTasksMessageSizeError,
    ColdocTasksProcessLookupError,
    ColdocTasksTimeoutError,
    ColdocTasksUnknownTaskError,
    ColdocTasksUsageError,
)
from ..outcome import Outcome, dumps_call, loads_outcome
from ..progress import Progress
from . import context
from .client import ProgressBox, PushSlot, ServerConnection, control_request, get_connection
from .infofile import InfofileError, PathLike, read_infofile
from .messages import Lost, Message, Ping, PushedLost, Share, Submit, Terminate, Wait
from .queues import ANY_QUEUE, DEFAULT_QUEUE, undeclared_queue_message
from .reconnect import Reconnecting
from .schedule import DEFAULT_PRIORITY, check_priority, run_after_timestamp

__all__ = ['ColdocFork', 'fork_class', 'connect', 'check_call', 'bind_fork_class', 'get_fork_class', 'server_address']

logger = logging.getLogger(__name__)

# infofile path -> (socket path, authkey) as last read in this process
_infofile_addresses: dict[str, tuple[str, bytes]] = {}


def server_address(infofile: PathLike | None, address: str | None, authkey: bytes | str | None
                    ) -> tuple[str, bytes]:
    if address is not None:
        if authkey is None:
            raise ColdocTasksUsageError('an address needs its authkey')
        return os.fsdecode(address), authkey.encode('utf-8') if isinstance(authkey, str) else bytes(authkey)
    if infofile is None:
        raise ColdocTasksUsageError('the coldoc backend needs an infofile, or an address and an authkey')
    info = read_infofile(infofile)
    return info['socket'], info['authkey']


def connect(infofile: str | None, address: str | None = None, authkey: bytes | str | None = None
            ) -> ServerConnection:
    """This process's connection to the server of ``infofile`` (or at
    ``address``, with ``authkey``).  The infofile is read once per process,
    not per task; it is read again only when its server cannot be reached
    (it may have restarted)."""
    if infofile is None:
        return get_connection(*server_address(None, address, authkey))
    known = _infofile_addresses.get(infofile)
    if known is not None:
        try:
            return get_connection(*known)
        except ColdocTasksConnectionError:
            pass
    known = _infofile_addresses[infofile] = server_address(infofile, None, None)
    return get_connection(*known)


def check_call(connection: ServerConnection, size: int, queue: str, cmd_name: str | None) -> None:
    """Refuse, before sending it, a call of ``size`` bytes the server would
    refuse: over its message size, or on a queue it does not run."""
    if size > connection.max_message_size:
        raise ColdocTasksMessageSizeError(
            f'the call of {cmd_name} pickles to {size} bytes, over the limit of '
            f'{connection.max_message_size} bytes of a message of the task server (its max_message_size)')
    if connection.queues and queue not in connection.queues and ANY_QUEUE not in connection.queues:
        raise ColdocTasksUsageError(undeclared_queue_message(queue, connection.queues))


class ColdocFork(Reconnecting, ForkBase):
    """Run each task on a worker of a coldoc task server.

    The full contract of :class:`~coldoc_tasks.base.ForkBase`.  Give the
    server's ``infofile``, or its ``address`` (socket path) and ``authkey``
    (also by position, as 0.2 took them: ``fork_class(address, authkey)``).
    ``queue`` names the server queue (``None`` or ``True``: the default
    queue).  ``priority`` (-100 to 100, default 0): a task of higher priority
    starts first among those waiting on its queue.  ``run_after`` (seconds
    since the epoch, or an aware ``datetime``): the server holds the task
    until then; ``terminate`` cancels it meanwhile.  A pickled fork object can
    ``wait`` from any process of the machine; it carries the infofile path,
    or the address and the key.
    """

    fork_type = 'coldoc'
    #: The server keeps the outcome for a copy (see ``__getstate__``).
    shared_wait = True
    #: The call travels to a worker through the server, pickled.
    pickles_arguments = True
    #: the infofile used when none is given (set on classes made by :func:`get_fork_class`)
    default_infofile: str | None = None
    #: where the server pushes the task's progress, in this process
    _progress_box: ProgressBox | None = None

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None, *,
                 infofile: PathLike | None = None, address: str | None = None, authkey: bytes | str | None = None,
                 priority: int = DEFAULT_PRIORITY, run_after: float | datetime.datetime | None = None):
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
        self.priority = check_priority(priority)
        self.run_after = run_after_timestamp(run_after)
        if infofile is None and address is None:
            infofile = self.default_infofile
        self.infofile = None if infofile is None else os.fspath(infofile)
        self._address = address
        self._authkey = authkey
        self._push: PushSlot | None = None
        if use_fork and (self.infofile is None or self.infofile not in _infofile_addresses):
            address = server_address(self.infofile, address, authkey)  # fail now on a missing infofile or key
            if self.infofile is not None:
                _infofile_addresses[self.infofile] = address

    def run(self, cmd: Callable[..., Any], /, *args: Any, retry_on_loss: int = 0, **kwargs: Any) -> None:
        """:meth:`ForkBase.run <coldoc_tasks.base.ForkBase.run>`, with one
        keyword of this backend (not passed to ``cmd``): ``retry_on_loss``,
        how many times the task is run again if its worker is lost (killed,
        crashed, or the server stopped while it ran, with a journal); 0 (the
        default): it is reported lost, ``wait`` raises
        :class:`ColdocTasksProcessLookupError`.  A task that may run more than
        once must be safe to run again."""
        if isinstance(retry_on_loss, bool) or not isinstance(retry_on_loss, int) or not 0 <= retry_on_loss <= 1000:
            raise ColdocTasksUsageError(f'retry_on_loss must be an integer from 0 to 1000, not {retry_on_loss!r}')
        self._retry_on_loss = retry_on_loss
        super().run(cmd, *args, **kwargs)

    def _connection(self) -> ServerConnection:
        return connect(self.infofile, self._address, self._authkey)

    def _submit(self, cmd: Callable, args: tuple, kwargs: dict) -> str:
        call = dumps_call(cmd, args, kwargs)
        connection = self._connection()
        check_call(connection, len(call), self.queue, self.cmd_name)
        task_id = new_task_id()
        waiter = context.CURRENT_TASK_ID
        # Inside a worker, wait() must tell the server it blocks (so that the
        # slot is lent): no push there, an explicit wait request instead.
        if waiter is None:
            self._push = connection.push_slots[task_id] = PushSlot()
        self._follow_progress(connection, task_id)
        self._journal_id = connection.journal_id
        if self._journal_id is not None and waiter is None:
            self._call = call
        try:
            connection.send(Submit(task_id, self.queue, self.cmd_name, waiter is None, self._retry_on_loss,
                                   self.priority, self.run_after, 0), call)
        except BaseException:
            connection.push_slots.pop(task_id, None)
            self._push = None
            raise
        return task_id

    def _push_slot(self) -> PushSlot | None:
        slot = self._push
        if slot is not None and slot.pid != os.getpid():
            # Inherited through fork(): only the parent's connection is fed
            # with the push; ask the server instead.
            slot = self._push = None
        return slot

    def _slot_outcome(self, slot: PushSlot) -> Outcome:
        if slot.message is None:
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server went away while waiting'))
        return self._decode(slot.message, slot.body)

    def _collect(self, timeout: float | None) -> Outcome:
        deadline = None if timeout is None else time.monotonic() + timeout
        slot = self._push_slot()
        if slot is not None:
            if not slot.latch.acquire(timeout=-1 if timeout is None else timeout):
                raise self._timeout_error(timeout)
            slot.latch.release()
            if slot.message is None and self._journal_id is not None:
                return self._collect_again(timeout, deadline)
            return self._slot_outcome(slot)
        try:
            connection = self._connection()
        except (ColdocTasksConnectionError, InfofileError) as exc:
            if self._journal_id is not None:
                return self._collect_again(timeout, deadline)
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server is gone ({exc})'))
        self._journal_id = connection.journal_id
        late = connection.late_results.pop(self.task_id, None)
        self._follow_progress(connection, self.task_id)
        try:
            if late is not None:
                message, body = late
            else:
                message, body = connection.request(Wait, self.task_id, context.CURRENT_TASK_ID,
                                                   timeout=timeout, unwait_on_timeout=True)
        except ColdocTasksTimeoutError:
            raise self._timeout_error(timeout) from None
        except ColdocTasksConnectionError as exc:
            if self._journal_id is not None:
                return self._collect_again(timeout, deadline)
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server went away while waiting ({exc})'))
        return self._decode(message, body)

    def _set_outcome(self, outcome: Outcome) -> None:
        self._call = None
        super()._set_outcome(outcome)

    async def _collect_async(self, timeout: float | None) -> Outcome:
        # The push, or the reply to a Wait, is handed over by the connection's
        # reader thread: the coroutine waits on a future it resolves.
        slot = self._push_slot()
        loop = asyncio.get_running_loop()
        if slot is not None:
            future, wake = threadsafe_future(loop)
            slot.add_done_callback(wake)
            try:
                if not await wait_future(future, timeout):
                    raise self._timeout_error(timeout)
            finally:
                slot.remove_done_callback(wake)
            if slot.message is None and self._journal_id is not None:
                return await loop.run_in_executor(None, self._collect_again, timeout, None)
            return self._slot_outcome(slot)
        try:
            # The first use in this process connects and authenticates: not in the loop's thread.
            connection = await loop.run_in_executor(None, self._connection)
        except (ColdocTasksConnectionError, InfofileError) as exc:
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server is gone ({exc})'))
        late = connection.late_results.pop(self.task_id, None)
        if late is not None:
            return self._decode(*late)
        try:
            reply = await connection.request_async(Wait, self.task_id, context.CURRENT_TASK_ID,
                                                   timeout=timeout, unwait_on_timeout=True)
        except ColdocTasksTimeoutError:
            raise self._timeout_error(timeout) from None
        except ColdocTasksConnectionError as exc:
            if self._journal_id is not None:
                return await loop.run_in_executor(None, self._collect_again, timeout, None)
            return Outcome(exception=ColdocTasksProcessLookupError(
                f'task {self.task_id}: the task server went away while waiting ({exc})'))
        return self._decode(*reply)

    def _follow_progress(self, connection: ServerConnection, task_id: str) -> None:
        # The server pushes a task's progress to its subscriber and to its
        # waiters: reading it costs no request.
        # Copies of the fork object in this process share one box.
        boxes = connection.progress_boxes
        box = boxes.get(task_id) or self._progress_box or ProgressBox()
        self._progress_box = boxes[task_id] = box

    def _read_progress(self) -> Progress | None:
        box = self._progress_box
        return None if box is None else box.latest

    @staticmethod
    def _decode(message: Message, body: bytes) -> Outcome:
        if isinstance(message, (Lost, PushedLost)):
            return Outcome(exception=ColdocTasksProcessLookupError(message.message))
        return loads_outcome(body)

    def _terminate(self) -> None:
        if self._push is not None and self._push.message is not None:
            return  # it has ended: its outcome is here
        with contextlib.suppress(ColdocTasksUnknownTaskError):  # it ended and was collected
            self._connection().request(Terminate, self.task_id, timeout=30)

    def __getstate__(self) -> dict:
        if self.task_id is not None and self._outcome is None and not self._inline:
            # Ask the server to keep the outcome for the copy; as the reply
            # comes after our submit was handled, the server knows the task
            # before any other process can ask for it.
            with contextlib.suppress(ColdocTasksUnknownTaskError):
                self._connection().request(Share, self.task_id, timeout=30)
            if self._push is not None and self._push.message is not None:
                # It ended before the share: the copy takes the outcome along.
                with contextlib.suppress(ColdocTasksException):
                    self.wait(timeout=0, raise_exception=False)
        state = super().__getstate__()
        state['_push'] = None
        state.pop('_call', None)
        state.pop('_progress_box', None)
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
        control_request(*server_address(infofile, None, None), Ping, timeout=timeout)
    except (InfofileError, ColdocTasksConnectionError, ColdocTasksTimeoutError) as exc:
        raise ColdocTasksBackendUnavailableError(str(exc)) from None
    return bind_fork_class(infofile)


