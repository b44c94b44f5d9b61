"""The messages of the coldoc protocol, as named types: built and read here,
and nowhere else.

On the wire a message is the frame of :mod:`.protocol` whose header is a
JSON array, ``[name, field, ...]``, in the order of the fields below, and
whose body (a pickled call or an encoded outcome) the server relays without
reading it.  :func:`decode` checks the name, the number of fields and the
type of each; a message that fails is a :class:`ColdocTasksProtocolError`.

============================  ==========  =================================================
message                       direction   meaning
============================  ==========  =================================================
Submit + call [+ record]      C -> S      run a task; ``subscribe``: push me its outcome;
                                          ``retry_on_loss``: run it again (so many times at
                                          most) if its worker is lost; ``priority`` orders
                                          its queue; ``run_after``: hold it until then; the
                                          last ``record_size`` bytes of the body are kept
                                          with the task for ``Describe``.  To a server with
                                          a journal, a client sends the Submit of a task it
                                          has not got the outcome of again after a restart:
                                          the server runs it if it never recorded it, else
                                          pushes the outcome when there is one
Describe                      C -> S      ``Ok`` with the task's facts, and its record and
                                          outcome as the body; collects nothing
Share                         C -> S      keep the outcome for a copy of the fork object
Wait                          C -> S      reply with the outcome when there is one
Unwait                        C -> S      forget that wait (it timed out); no reply
Terminate                     C -> S      cancel or terminate the task
Ping, Status, Shutdown        C -> S      ``Ok`` with the server's facts, status, pid
Ok                            S -> C      the reply to a request, with a JSON value
Result + outcome              S -> C      the reply to ``Wait``: the task's outcome
Lost                          S -> C      the reply to ``Wait``: its process vanished
Pushed + outcome, PushedLost  S -> C      unasked, to the submitter that subscribed
PushedProgress                S -> C      unasked: a running task's latest report, to its
                                          subscriber and to the clients waiting for it
Error                         S -> C      the request failed (``kind``: see ``ERRORS``)
Dropped                       S -> C      the server drops the connection, saying why
Run + call, Exit              S -> W      run this task; leave
Done + outcome                W -> S      the task ended (``failed``: it raised; ``rss``: the
                                          worker's resident bytes after it, if the server
                                          limits them, else None)
ProgressReport                W -> S      the task's latest report (coalesced by the worker)
============================  ==========  =================================================

Every request but ``Submit`` and ``Unwait`` carries a request id ``rid``
chosen by the client, and gets exactly one reply carrying it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar

from ..exceptions import ColdocTasksException, ColdocTasksProtocolError
from .protocol import ERRORS, Body, decode_header, encode_header, encode_message

__all__ = ['Message', 'Submit', 'Describe', 'Share', 'Wait', 'Unwait', 'Terminate', 'Ping', 'Status', 'Shutdown', 'Ok',
           'Result', 'Lost', 'Pushed', 'PushedLost', 'PushedProgress', 'Error', 'Dropped', 'Run', 'Exit', 'Done',
           'ProgressReport', 'REQUESTS', 'decode']

_TYPES: dict[str, type[Message]] = {}


class Message:
    """A message of the protocol; :attr:`name` is what travels first."""

    name: ClassVar[str] = ''
    #: the names of the fields, in their order on the wire
    _fields: ClassVar[tuple[str, ...]] = ()

    def encode(self, body: Body = b'') -> list[bytes | memoryview]:
        """The frame pieces of this message, with ``body``."""
        return encode_message([self.name, *map(self.__dict__.__getitem__, self._fields)], body)

    def header(self) -> bytes:
        """The header of this message as it travels (what :func:`decode` reads)."""
        return encode_header([self.name, *map(self.__dict__.__getitem__, self._fields)])


def _message(name: str):
    def register(cls: type) -> type:
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.name = name
        cls._fields = tuple(field.name for field in dataclasses.fields(cls))
        _TYPES[name] = cls
        return cls
    return register


@_message('submit')
class Submit(Message):
    task_id: str
    queue: str
    cmd_name: str
    subscribe: bool
    retry_on_loss: int
    #: -100 to 100: higher runs first within the queue
    priority: int
    #: seconds since the epoch before which the task does not start (None: at once)
    run_after: float | None
    #: the bytes at the end of the body that are a record kept with the task, not the call
    record_size: int


@_message('describe')
class Describe(Message):
    rid: int
    task_id: str


@_message('share')
class Share(Message):
    rid: int
    task_id: str


@_message('wait')
class Wait(Message):
    rid: int
    task_id: str
    #: the task the waiting process runs, if it is a worker: its slot is lent meanwhile
    waiter_task_id: str | None


@_message('unwait')
class Unwait(Message):
    rid: int


@_message('terminate')
class Terminate(Message):
    rid: int
    task_id: str


@_message('ping')
class Ping(Message):
    rid: int


@_message('status')
class Status(Message):
    rid: int


@_message('shutdown')
class Shutdown(Message):
    rid: int
    grace: float | None


@_message('ok')
class Ok(Message):
    rid: int
    value: Any


@_message('result')
class Result(Message):
    rid: int
    task_id: str


@_message('lost')
class Lost(Message):
    rid: int
    task_id: str
    message: str


@_message('pushed')
class Pushed(Message):
    task_id: str


@_message('pushed_lost')
class PushedLost(Message):
    task_id: str
    message: str


@_message('pushed_progress')
class PushedProgress(Message):
    task_id: str
    done: float
    total: float | None
    message: str
    metadata: dict


@_message('error')
class Error(Message):
    rid: int
    kind: str
    message: str

    @classmethod
    def of(cls, rid: int, error: ColdocTasksException) -> Error:
        """The reply carrying ``error`` (one of :data:`.protocol.ERRORS`)."""
        for kind, error_class in ERRORS.items():
            if type(error) is error_class:
                return cls(rid, kind, str(error))
        raise TypeError(f'{type(error).__name__} cannot travel in an error reply')

    def exception(self) -> ColdocTasksException:
        """The exception this reply carries."""
        error_class = ERRORS.get(self.kind)
        if error_class is None:
            return ColdocTasksProtocolError(f'the task server sent an error of an unknown kind: {self.kind!r:.100}')
        return error_class(self.message)


@_message('dropped')
class Dropped(Message):
    message: str


@_message('run')
class Run(Message):
    task_id: str


@_message('exit')
class Exit(Message):
    pass


@_message('done')
class Done(Message):
    task_id: str
    failed: bool
    #: the worker's resident memory after the task, in bytes (None: not measured)
    rss: int | None


@_message('progress')
class ProgressReport(Message):
    task_id: str
    done: float
    total: float | None
    message: str
    metadata: dict


#: The requests a client sends (the server reads nothing else from a client).
REQUESTS: tuple[type[Message], ...] = (Submit, Describe, Share, Wait, Unwait, Terminate, Ping, Status, Shutdown)


def _checker(hint: Any) -> Callable[[Any], bool]:
    """A test of a decoded JSON value against a field's type (made once per
    field: decoding is on every task's path)."""
    if hint is Any:
        return lambda value: True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [_checker(option) for option in typing.get_args(hint)]
        return lambda value: any(check(value) for check in options)
    if hint is type(None):
        return lambda value: value is None
    if hint is float:
        return lambda value: type(value) is float or type(value) is int
    if hint is int:
        return lambda value: type(value) is int  # JSON decodes true as a bool, never as an int
    return lambda value: isinstance(value, hint)


_HINTS = {name: [(field, _checker(hint)) for field, hint in typing.get_type_hints(cls).items()
                 if field in cls._fields]
          for name, cls in _TYPES.items()}


def decode(header: bytes, expected: tuple[type[Message], ...] | None = None) -> Message:
    """The message in ``header``, checked: a known name (one of
    ``expected``, if given), the right number of fields, each of its type."""
    fields = decode_header(header)
    name = fields[0]
    cls = _TYPES.get(name)
    if cls is None or (expected is not None and cls not in expected):
        raise ColdocTasksProtocolError(f'unexpected message {name!r:.100}')
    hints = _HINTS[name]
    values = fields[1:]
    if len(values) != len(hints):
        raise ColdocTasksProtocolError(f'a {name} message has {len(values)} fields, not {len(hints)}')
    for (field, fits), value in zip(hints, values, strict=True):
        if not fits(value):
            raise ColdocTasksProtocolError(f'a {name} message with a bad {field}: {value!r:.100}')
    return cls(*values)
