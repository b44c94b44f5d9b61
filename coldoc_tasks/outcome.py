"""Running a task's callable and carrying what came of it between processes.

An :class:`Outcome` is either a value or an exception with the traceback text
of where it was raised.  ``dumps_outcome`` turns it into bytes and never fails
for the task's sake: a result that cannot be pickled becomes a
:class:`ColdocTasksSerializationError` naming its type, and an exception that
cannot be pickled, or not rebuilt from its pickle, becomes a
:class:`ColdocTasksRemoteError` carrying its type name, message and traceback.
"""

from __future__ import annotations

import dataclasses
import pickle
import traceback
from collections.abc import Callable
from typing import Any

from .exceptions import (
    ColdocTasksRemoteError,
    ColdocTasksSerializationError,
)

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL


@dataclasses.dataclass
class Outcome:
    """What came of running a task: ``value``, or ``exception`` and the
    ``traceback`` (a list of str) formatted where it was raised."""

    value: Any = None
    exception: BaseException | None = None
    traceback: list[str] | None = None

    @property
    def failed(self) -> bool:
        return self.exception is not None


def describe_callable(cmd: Callable) -> str:
    """A readable dotted name for ``cmd``, for logs and status tables."""
    module = getattr(cmd, '__module__', None) or ''
    name = getattr(cmd, '__qualname__', None) or getattr(cmd, '__name__', None)
    if name is None:
        name = type(cmd).__qualname__ + ' instance'
    return f'{module}.{name}' if module else name


def type_name(obj: Any) -> str:
    """The dotted name of ``obj``'s class, as error messages show it."""
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == 'builtins' else f'{module}.{cls.__qualname__}'


def call_capturing(cmd: Callable, args: tuple, kwargs: dict) -> Outcome:
    """Call ``cmd(*args, **kwargs)`` and return what came of it, never raising
    for the callable's sake."""
    try:
        return Outcome(value=cmd(*args, **kwargs))
    except BaseException as exc:  # every failure of the task is its result
        return Outcome(exception=exc, traceback=traceback.format_exception(type(exc), exc, exc.__traceback__))


def dumps_call(cmd: Callable, args: tuple, kwargs: dict) -> bytes:
    """Pickle a call for another process; raise
    :class:`ColdocTasksSerializationError` naming what cannot be pickled."""
    try:
        return pickle.dumps((cmd, args, kwargs), PICKLE_PROTOCOL)
    except Exception as exc:
        culprit = _find_unpicklable((cmd, *args, *kwargs.values()))
        what = f'{type_name(culprit)} ({culprit!r:.80})' if culprit is not None else 'the call'
        raise ColdocTasksSerializationError(
            f'cannot send the task {describe_callable(cmd)} to another process: {what} cannot be pickled: {exc}'
        ) from exc


def loads_call(data: bytes) -> tuple[Callable, tuple, dict]:
    """The inverse of :func:`dumps_call`."""
    cmd, args, kwargs = pickle.loads(data)
    return cmd, args, kwargs


def _find_unpicklable(objects: tuple) -> Any:
    for obj in objects:
        try:
            pickle.dumps(obj, PICKLE_PROTOCOL)
        except Exception:
            return obj
    return None


def dumps_outcome(outcome: Outcome) -> bytes:
    """Pickle ``outcome``; substitute a clear error for whatever cannot travel."""
    return encode_outcome(outcome)[0]


def encode_outcome(outcome: Outcome) -> tuple[bytes, bool]:
    """Like :func:`dumps_outcome`, and say whether the outcome is a failure
    (an exception, or a result that could not be pickled)."""
    if not outcome.failed:
        try:
            return pickle.dumps(('ok', outcome.value), PICKLE_PROTOCOL), False
        except Exception as exc:
            error = ColdocTasksSerializationError(
                f'the result of the task, of type {type_name(outcome.value)}, cannot be pickled: {exc}'
            )
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            return pickle.dumps(('err', error, tb), PICKLE_PROTOCOL), True
    exc = outcome.exception
    try:
        data = pickle.dumps(('err', exc, outcome.traceback), PICKLE_PROTOCOL)
        pickle.loads(data)  # an exception may pickle but fail to rebuild (e.g. required keyword arguments)
        return data, True
    except Exception:
        substitute = ColdocTasksRemoteError(type_name(exc), _safe_str(exc), ''.join(outcome.traceback or ()))
        return pickle.dumps(('err', substitute, outcome.traceback), PICKLE_PROTOCOL), True


def loads_outcome(data: bytes) -> Outcome:
    """The inverse of :func:`dumps_outcome`.  A payload that cannot be
    unpickled here (say, a class this process cannot import) becomes an
    outcome carrying a :class:`ColdocTasksSerializationError`."""
    try:
        message = pickle.loads(data)
    except Exception as exc:
        error = ColdocTasksSerializationError(f'the outcome of the task cannot be unpickled in this process: {exc!r}')
        return Outcome(exception=error, traceback=traceback.format_exception(type(exc), exc, exc.__traceback__))
    if message[0] == 'ok':
        return Outcome(value=message[1])
    return Outcome(exception=message[1], traceback=list(message[2] or ()))


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f'<str() of {type_name(exc)} failed>'
