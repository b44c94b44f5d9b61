"""Running a task's callable and carrying what came of it between processes.

An :class:`Outcome` is either a value or an exception with the traceback text
of where it was raised.  On its way from the process that ran the task to the
one that waits for it, it is the bytes of :func:`encode_outcome`::

    outcome := MAGIC (4 bytes) | kind (1 byte) | meta_length (u32, big-endian) | meta | body

``kind`` is ``b'v'`` (a value) or ``b'e'`` (an exception).  ``meta`` is
what any process can read: for a value, its type's dotted name (UTF-8); for
an exception, a JSON object ``{"type": T, "message": M, "traceback": [lines],
"reason": R}`` (``reason`` only when it travels as a substitute).  ``body``
is the pickle of the value or of the exception, or empty.

The JSON part is what keeps an error's story when pickle cannot: a result
that cannot be pickled becomes a :class:`ColdocTasksSerializationError`
naming its type; an exception that cannot be pickled, nor rebuilt from its
pickle, nor unpickled where it is waited for (a class that process cannot
import), becomes a :class:`ColdocTasksRemoteError` carrying its type name,
message and traceback, read from ``meta``.  With a size limit (the coldoc
server's ``max_message_size``), a result over it becomes a
:class:`ColdocTasksMessageSizeError` naming the size and the limit, and an
exception over it travels as that substitute, shortened if need be.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle
import struct
import traceback
from collections.abc import Callable
from typing import Any

from .aio import run_coroutine
from .exceptions import ColdocTasksMessageSizeError, ColdocTasksRemoteError, ColdocTasksSerializationError

PICKLE_PROTOCOL = pickle.HIGHEST_PROTOCOL
MAGIC = b'CTo\x01'
_PREFIX = struct.Struct('!4scI')
VALUE = b'v'
EXCEPTION = b'e'
#: The room an error that replaces an outcome over the size limit may take,
#: whatever the limit: the substitute's message and traceback are shortened
#: to fit in it.
MIN_ERROR_ROOM = 16 * 1024


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
    for the callable's sake.  A coroutine it returns (``cmd`` is an ``async
    def``) is run to completion here (see :func:`~coldoc_tasks.aio.run_coroutine`)."""
    try:
        value = cmd(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = run_coroutine(value)
        return Outcome(value=value)
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


def dumps_outcome(outcome: Outcome, limit: int | None = None) -> bytes:
    """The bytes of :func:`encode_outcome`, joined."""
    return b''.join(encode_outcome(outcome, limit)[0])


def encode_outcome(outcome: Outcome, limit: int | None = None) -> tuple[list[bytes], bool]:
    """Encode ``outcome`` for another process, as a list of pieces (so that a
    big pickle is not copied) and whether it is a failure.  Never fails for
    the task's sake: what cannot travel is replaced by an error saying why.
    With ``limit``, the pieces add up to at most ``max(limit,
    MIN_ERROR_ROOM)`` bytes."""
    if not outcome.failed:
        value = outcome.value
        try:
            body = pickle.dumps(value, PICKLE_PROTOCOL)
        except Exception as exc:
            error = ColdocTasksSerializationError(
                f'the result of the task, of type {type_name(value)}, cannot be pickled: {exc}')
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            return _encode_exception(error, tb, limit), True
        name = type_name(value).encode('utf-8', 'surrogatepass')
        pieces = [_PREFIX.pack(MAGIC, VALUE, len(name)) + name, body]
        size = len(pieces[0]) + len(body)
        if limit is None or size <= limit:
            return pieces, False
        error = ColdocTasksMessageSizeError(
            f'the result of the task, of type {type_name(value)}, pickles to {size} bytes, over the limit of '
            f'{limit} bytes of a message (the server\'s max_message_size)')
        return _encode_exception(error, [], limit), True
    return _encode_exception(outcome.exception, outcome.traceback or [], limit), True


def _encode_exception(exc: BaseException, tb: list[str], limit: int | None) -> list[bytes]:
    meta: dict[str, Any] = {'type': type_name(exc), 'message': _safe_str(exc), 'traceback': list(tb)}
    try:
        body = pickle.dumps(exc, PICKLE_PROTOCOL)
        pickle.loads(body)  # an exception may pickle but fail to rebuild (e.g. required keyword arguments)
    except Exception:
        body = b''
        meta['reason'] = 'it cannot be pickled, or not rebuilt from its pickle'
    pieces = _pieces(EXCEPTION, meta, body)
    size = sum(map(len, pieces))
    if limit is None or size <= limit:
        return pieces
    room = max(limit, MIN_ERROR_ROOM)
    meta['reason'] = f'it pickles to {size} bytes, over the limit of {limit} bytes of a message'
    pieces = _pieces(EXCEPTION, meta, b'')
    if sum(map(len, pieces)) > room:
        # Escaped in JSON, a character takes at most 6 bytes.
        chars = max(0, (room - 2048) // 12)
        meta['message'] = _shorten(meta['message'], chars, keep='head')
        # Each line first, so that one huge line (the message, again) does not
        # push the frames out; then the whole, keeping its end.
        lines = [_shorten(line, chars // 4, keep='head') for line in tb]
        meta['traceback'] = [_shorten(''.join(lines), chars, keep='tail')]
        pieces = _pieces(EXCEPTION, meta, b'')
    return pieces


def _pieces(kind: bytes, meta: dict[str, Any], body: bytes) -> list[bytes]:
    meta_bytes = json.dumps(meta, ensure_ascii=False, separators=(',', ':')).encode('utf-8', 'surrogatepass')
    head = _PREFIX.pack(MAGIC, kind, len(meta_bytes)) + meta_bytes
    return [head, body] if body else [head]


def _shorten(text: str, chars: int, keep: str) -> str:
    if len(text) <= chars:
        return text
    note = f'[... {len(text) - chars} characters left out ...]'
    if keep == 'head':
        return text[:chars] + note
    return note + text[len(text) - chars:]


def loads_outcome(data: bytes | memoryview) -> Outcome:
    """The inverse of :func:`encode_outcome`; never raises.  An exception
    this process cannot unpickle (say, its class cannot be imported here)
    becomes a :class:`ColdocTasksRemoteError` with its type name, message
    and traceback; a value, a :class:`ColdocTasksSerializationError` naming
    its type."""
    view = memoryview(data)
    try:
        magic, kind, meta_length = _PREFIX.unpack_from(view)
        if magic != MAGIC or kind not in (VALUE, EXCEPTION):
            raise ValueError(f'it starts with {bytes(view[:5])!r}')
        start = _PREFIX.size + meta_length
        meta_text = str(view[_PREFIX.size:start], 'utf-8', 'surrogatepass')
        body = view[start:]
        if kind == EXCEPTION:
            meta = json.loads(meta_text)
            if not isinstance(meta, dict) or not isinstance(meta.get('type'), str):
                raise ValueError('its description is not an object naming a type')
    except (ValueError, struct.error, RecursionError) as exc:
        error = ColdocTasksSerializationError(f'the outcome of the task is not in the format of coldoc_tasks: {exc}')
        return Outcome(exception=error, traceback=[])
    if kind == VALUE:
        try:
            return Outcome(value=pickle.loads(body))
        except Exception as exc:
            error = ColdocTasksSerializationError(
                f'the result of the task, of type {meta_text}, cannot be unpickled in this process: {exc!r}')
            return Outcome(exception=error, traceback=traceback.format_exception(type(exc), exc, exc.__traceback__))
    tb = [line for line in meta.get('traceback') or () if isinstance(line, str)]
    if body:
        try:
            exc = pickle.loads(body)
            if isinstance(exc, BaseException):
                return Outcome(exception=exc, traceback=tb)
            reason = f'its pickle holds a {type_name(exc)}, not an exception'
        except Exception as error:
            reason = f'it cannot be unpickled in this process: {error!r}'
    else:
        reason = str(meta.get('reason') or 'it could not be sent as itself')
    substitute = ColdocTasksRemoteError(meta['type'], str(meta.get('message', '')), ''.join(tb), reason)
    return Outcome(exception=substitute, traceback=tb)


def read_error(data: bytes | memoryview, max_chars: int = 8000) -> dict[str, Any] | None:
    """The exception an encoded outcome carries, as text, read without
    unpickling anything: ``{"type": ..., "message": ..., "traceback": ...}``
    (the traceback joined into one str, its last ``max_chars`` characters;
    the message, its first), or None for a value or bytes of another format."""
    view = memoryview(data)
    try:
        magic, kind, meta_length = _PREFIX.unpack_from(view)
        if magic != MAGIC or kind != EXCEPTION:
            return None
        meta = json.loads(str(view[_PREFIX.size:_PREFIX.size + meta_length], 'utf-8', 'surrogatepass'))
    except (ValueError, struct.error, RecursionError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get('type'), str):
        return None
    lines = meta.get('traceback')
    text = ''.join(line for line in lines if isinstance(line, str)) if isinstance(lines, list) else ''
    return {'type': meta['type'], 'message': _shorten(str(meta.get('message', '')), max_chars, keep='head'),
            'traceback': _shorten(text, max_chars, keep='tail')}


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f'<str() of {type_name(exc)} failed>'
