"""The wire protocol of the coldoc task server, version 6: frames and the handshake.

Everything travels over ``AF_UNIX`` stream sockets as frames::

    frame := header_length (u32, big-endian) | body_length (u32) | header | body

After authentication the header is a JSON array (UTF-8) whose first item
names the message; the body is an opaque payload, a pickled call or an
encoded outcome (see :mod:`coldoc_tasks.outcome`), that the server passes
between clients and workers without ever reading it.  The server process
never unpickles anything a peer sent: a key holder cannot run code in it,
and a slow or huge unpickle stalls nobody but the worker or the client that
does it.  A header may be at most ``MAX_HEADER`` bytes; a body at most the
limit the server was started with.  A frame that announces more is refused
before anything is allocated for it.

Authentication comes first on every client connection, in frames whose
header is raw bytes and whose body is empty:

    ====  ==========  =======================================================
    step  direction   header
    ====  ==========  =======================================================
    1     S -> C      GREETING + server_nonce (32 random bytes)
    2     C -> S      HMAC-SHA256(key, b"client" + server_nonce) + client_nonce
    3     S -> C      b"OK" + HMAC-SHA256(key, b"server" + client_nonce),
                      or b"NO" and the server closes the connection
    ====  ==========  =======================================================

The greeting names the protocol version (``coldoc-tasks/6``: 4 added the
progress reports, 5 the worker's memory in ``Done``, 6 the priority, the
``run_after`` time, the ``retry_on_loss`` and the record of ``Submit``, and
``Describe``), so a
client of another version stops with an error naming both.  The server
compares digests with ``hmac.compare_digest``; the client checks the server's proof in the
same way, so neither side trusts a peer that does not hold the key.  Only
after step 3 are headers read as messages; a client sends nothing more before
it has read step 3 (bytes that arrive with its step 2 are read under the
handshake's limits, and a body there drops it).

After authentication every header is a JSON array naming a message and
giving its fields; the messages, between clients, the server and its
workers, are the named types of :mod:`.messages`, which also checks them.

The submitting process subscribes, so its ``wait`` costs no request at all:
the outcome is pushed to it, and the server forgets the task unless a
``Share`` (sent when a fork object is pickled) asked to keep it for a
``Wait`` from elsewhere.  A worker waiting for a subtask uses ``Wait``
instead, naming its own task, so that the server lends its slot.

A worker encodes an outcome within the server's ``max_message_size``, so the
server never receives a result over it (see :func:`coldoc_tasks.outcome.encode_outcome`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import socket
import struct

from ..exceptions import (
    ColdocTasksAuthenticationError,
    ColdocTasksException,
    ColdocTasksProtocolError,
    ColdocTasksUnknownTaskError,
    ColdocTasksUsageError,
)

PROTOCOL_VERSION = 6
GREETING = b'coldoc-tasks/%d ' % PROTOCOL_VERSION
NONCE_SIZE = 32
DIGEST_SIZE = hashlib.sha256().digest_size
MAX_HEADER = 64 * 1024
#: Largest frame accepted before authentication.
MAX_HANDSHAKE_FRAME = 256
#: Default largest body (a call or an outcome) accepted after authentication.
DEFAULT_MAX_BODY = 512 * 1024 * 1024

#: The errors a reply can carry, by the name that travels.
ERRORS: dict[str, type[ColdocTasksException]] = {
    'unknown_task': ColdocTasksUnknownTaskError,
    'usage': ColdocTasksUsageError,
    'protocol': ColdocTasksProtocolError,
}

_LENGTHS = struct.Struct('!II')
# ASCII: a str with lone surrogates (a path read with surrogateescape) travels too
_encode_json = json.JSONEncoder(separators=(',', ':')).encode
# Without json.loads' whitespace handling (none is sent): a third of its time.
_decode_json = json.JSONDecoder().raw_decode


Body = bytes | memoryview | list  # a list: the body in pieces, sent one after the other


def encode_frame(header: bytes, body: Body = b'') -> list[bytes | memoryview]:
    """The pieces of a frame, ready for ``sendmsg`` (no copy of ``body``)."""
    if isinstance(body, list):
        prefix = _LENGTHS.pack(len(header), sum(map(len, body)))
        return [prefix + header, *body]
    prefix = _LENGTHS.pack(len(header), len(body))
    return [prefix + header, body] if body else [prefix + header]


def sendall_pieces(sock: socket.socket, pieces: list[bytes | memoryview]) -> None:
    """Send frame pieces whole on a blocking socket."""
    views = [memoryview(piece).cast('B') for piece in pieces]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def encode_message(message: tuple | list, body: Body = b'') -> list[bytes | memoryview]:
    """A message header (JSON) and its body, as frame pieces."""
    return encode_frame(_encode_json(message).encode('utf-8'), body)


def encode_header(message: tuple | list) -> bytes:
    """A message header, as :func:`encode_message` frames it."""
    return _encode_json(message).encode('utf-8')


def decode_header(header: bytes) -> tuple:
    """Read a message header: a JSON array whose first item is a string.
    Raise :class:`ColdocTasksProtocolError` on anything else."""
    try:
        text = header.decode('utf-8')
        message, end = _decode_json(text)
        if end != len(text):
            raise ValueError(f'extra data after the array, at {end}')
    except (ValueError, RecursionError) as exc:
        raise ColdocTasksProtocolError(f'a message header is not JSON: {exc}') from None
    if not isinstance(message, list) or not message or not isinstance(message[0], str):
        raise ColdocTasksProtocolError(f'a message header is not an array naming its kind: {type(message).__name__}')
    return tuple(message)


#: The most one read of a socket takes.
RECV_SIZE = 1 << 18


class RecvBuffer:
    """A buffer that reads of a socket reuse.  ``sock.recv(n)`` allocates
    ``n`` bytes at every call, and at this size that means mapping memory,
    shrinking it to what came and unmapping it: three system calls and page
    faults on every read, for a message of a few dozen bytes.  Not for
    sharing between threads."""

    __slots__ = ('_buffer', '_view')

    def __init__(self, size: int = RECV_SIZE):
        self._buffer = bytearray(size)
        self._view = memoryview(self._buffer)

    @property
    def size(self) -> int:
        return len(self._buffer)

    def recv(self, sock: socket.socket) -> memoryview:
        """What one read of ``sock`` returns (empty at the end of the stream);
        valid until the next read."""
        return self._view[:sock.recv_into(self._buffer)]


class FrameReader:
    """Splits a byte stream into ``(header, body)`` frames, refusing any frame
    that announces more than the limits, before reading it."""

    def __init__(self, max_header: int = MAX_HEADER, max_body: int = DEFAULT_MAX_BODY):
        self.max_header = max_header
        self.max_body = max_body
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | memoryview) -> list[tuple[bytes, bytes]]:
        """Add received bytes; return the frames now complete.  Raise
        :class:`ColdocTasksProtocolError` on a frame over the limits."""
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        size = len(buffer)
        with memoryview(buffer) as view:
            while size - offset >= _LENGTHS.size:
                header_length, body_length = _LENGTHS.unpack_from(buffer, offset)
                if header_length > self.max_header or body_length > self.max_body:
                    raise ColdocTasksProtocolError(
                        f'a frame announces {header_length} header bytes and {body_length} body bytes, '
                        f'over the limits of {self.max_header} and {self.max_body}')
                end = offset + _LENGTHS.size + header_length + body_length
                if end > size:
                    break
                start = offset + _LENGTHS.size
                frames.append((bytes(view[start:start + header_length]), bytes(view[start + header_length:end])))
                offset = end
        if offset:
            del buffer[:offset]
        return frames


# -- the handshake, blocking, for clients ---------------------------------


def _digest(key: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, role + nonce, hashlib.sha256).digest()


def server_challenge() -> tuple[bytes, bytes]:
    """Step 1: ``(nonce, frame bytes)`` for the server to send."""
    nonce = secrets.token_bytes(NONCE_SIZE)
    return nonce, b''.join(encode_frame(GREETING + nonce))


def server_check_answer(key: bytes, nonce: bytes, answer: bytes) -> bytes | None:
    """Step 2 -> 3: the frame bytes to send back if ``answer`` proves the
    key, else ``None``."""
    if len(answer) != DIGEST_SIZE + NONCE_SIZE:
        return None
    if not hmac.compare_digest(answer[:DIGEST_SIZE], _digest(key, b'client', nonce)):
        return None
    return b''.join(encode_frame(b'OK' + _digest(key, b'server', answer[DIGEST_SIZE:])))


REFUSAL = b''.join(encode_frame(b'NO'))


def client_handshake(sock: socket.socket, key: bytes, reader: FrameReader) -> None:
    """Steps 1-3 on a blocking socket; raise
    :class:`ColdocTasksAuthenticationError` if either side's proof fails."""
    greeting = _read_one(sock, reader)
    if not greeting.startswith(b'coldoc-tasks/'):
        raise ColdocTasksProtocolError('the peer is not a coldoc task server')
    if not greeting.startswith(GREETING) or len(greeting) != len(GREETING) + NONCE_SIZE:
        raise ColdocTasksProtocolError(
            f'the server speaks {greeting[:len(GREETING)].decode("ascii", "replace").strip()}, '
            f'this client {GREETING.decode().strip()}')
    client_nonce = secrets.token_bytes(NONCE_SIZE)
    proof = _digest(key, b'client', greeting[len(GREETING):])
    sock.sendall(b''.join(encode_frame(proof + client_nonce)))
    try:
        verdict = _read_one(sock, reader)
    except ColdocTasksProtocolError:
        verdict = b'NO'
    if verdict[:2] != b'OK':
        raise ColdocTasksAuthenticationError('the task server refused the authentication key')
    if not hmac.compare_digest(verdict[2:], _digest(key, b'server', client_nonce)):
        raise ColdocTasksAuthenticationError('the task server could not prove that it holds the authentication key')


def _read_one(sock: socket.socket, reader: FrameReader) -> bytes:
    while True:
        data = sock.recv(4096)
        if not data:
            raise ColdocTasksProtocolError('the server closed the connection during the handshake')
        frames = reader.feed(data)
        if frames:
            if len(frames) > 1 or reader.pending:
                raise ColdocTasksProtocolError('unexpected data during the handshake')
            return frames[0][0]
