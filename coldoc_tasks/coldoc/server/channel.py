"""A non-blocking socket as the server's event loop uses it: frames in,
frames out, nothing ever blocks."""

from __future__ import annotations

import collections
import itertools
import socket

from ..protocol import FrameReader, RecvBuffer

# one for every channel: the server reads one socket at a time
_RECV_BUFFER = RecvBuffer()


class Channel:
    """A non-blocking stream socket with a :class:`FrameReader` for what
    comes in and an outbox for what could not be sent yet."""

    def __init__(self, sock: socket.socket, reader: FrameReader):
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = reader
        self.outbox: collections.deque[memoryview] = collections.deque()
        self.pending_bytes = 0  # in the outbox
        self.closed = False

    def receive(self) -> list[tuple[bytes, bytes]] | None:
        """The frames completed by what can be read now; ``None`` at end of
        stream.  Raises :class:`ColdocTasksProtocolError` on a bad frame and
        ``OSError`` on a broken connection."""
        frames = []
        while True:
            try:
                data = _RECV_BUFFER.recv(self.sock)
            except BlockingIOError:
                return frames
            if not data:
                return None if not frames else frames
            frames += self.reader.feed(data)
            if len(data) < _RECV_BUFFER.size:
                return frames

    def send(self, pieces: list[bytes | memoryview]) -> None:
        """Queue frame pieces; :meth:`flush` sends them."""
        if not self.closed:
            for piece in pieces:
                if len(piece):
                    self.outbox.append(memoryview(piece).cast('B'))
                    self.pending_bytes += len(piece)

    def flush(self) -> None:
        """Send what the socket takes now (``OSError`` if it is broken)."""
        outbox = self.outbox
        while outbox:
            try:
                sent = self.sock.sendmsg(list(itertools.islice(outbox, 64)))
            except BlockingIOError:
                return
            self.pending_bytes -= sent
            while sent:
                head = outbox[0]
                if sent >= len(head):
                    sent -= len(head)
                    outbox.popleft()
                else:
                    outbox[0] = head[sent:]
                    sent = 0

    @property
    def wants_write(self) -> bool:
        return bool(self.outbox)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.outbox.clear()
            self.pending_bytes = 0
            self.sock.close()
