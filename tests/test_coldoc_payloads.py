"""Payloads on a real coldoc server: a result or an exception over the
server's ``max_message_size`` is refused in the worker, before the server
would hold it; calls and outcomes cross the server as opaque bytes, and the
server never unpickles what a peer sends."""

from __future__ import annotations

import os
import pickle
import socket
import struct

import pytest

from coldoc_tasks.base import new_task_id
from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc.messages import Dropped, Pushed, Submit, decode
from coldoc_tasks.coldoc.protocol import FrameReader, client_handshake
from coldoc_tasks.coldoc_tasks import bind_fork_class
from coldoc_tasks.exceptions import (
    ColdocTasksException,
    ColdocTasksMessageSizeError,
    ColdocTasksProcessLookupError,
    ColdocTasksRemoteError,
    ColdocTasksRemoteTraceback,
    ColdocTasksSerializationError,
)
from coldoc_tasks.outcome import loads_outcome
from tests import jobs
from tests.helpers_coldoc import assert_healthy, authkey_of, server_children, server_rss_kib

LIMIT = 1024 * 1024


def fork_for(server):
    return bind_fork_class(server.infofile)


def test_a_result_over_the_limit_is_refused_in_the_worker(make_server):
    server = make_server(queues=('default:1:reuse',), max_message_size=LIMIT)
    F = fork_for(server)
    first = F()
    first.run(jobs.getpid)
    worker = first.wait(timeout=30)
    rss_before = server_rss_kib(server)
    f = F()
    f.run(jobs.big_bytes, 50 * 2**20)
    with pytest.raises(ColdocTasksMessageSizeError,
                       match=r'of type bytes, pickles to 5242\d{4} bytes, over the limit of 1048576 bytes') as info:
        f.wait(timeout=60)
    assert isinstance(info.value, ColdocTasksSerializationError) and isinstance(info.value, ColdocTasksException)
    grown = server_rss_kib(server) - rss_before
    assert grown < 20 * 1024, f'the server grew by {grown} KiB: it received the result'
    under = F()
    under.run(jobs.big_bytes, LIMIT - 4096)
    assert under.wait(timeout=30) == b'x' * (LIMIT - 4096)
    again = F()
    again.run(jobs.getpid)
    assert again.wait(timeout=30) == worker, 'the worker did not survive'
    assert_healthy(server, failed=1, done=4)


def test_an_exception_over_the_limit_arrives_as_its_substitute(make_server):
    server = make_server(queues=('default:1:reuse',), max_message_size=LIMIT)
    F = fork_for(server)
    f = F()
    f.run(jobs.raise_big, 'a short story', 5 * 2**20)
    with pytest.raises(ColdocTasksRemoteError) as info:
        f.wait(timeout=60)
    error = info.value
    assert (error.type_name, error.message) == ('tests.jobs.BigError', 'a short story')
    assert 'raise_big' in error.remote_traceback and 'raise_big' in ''.join(f.traceback)
    assert isinstance(error.__cause__, ColdocTasksRemoteTraceback)
    assert 'pickles to' in error.reason and 'over the limit of 1048576 bytes' in error.reason

    g = F()
    g.run(jobs.raise_long_message, 5 * 2**20)
    with pytest.raises(ColdocTasksRemoteError) as info:
        g.wait(timeout=60)
    error = info.value
    assert error.type_name == 'ValueError'
    assert error.message.startswith('start mmm') and 'characters left out' in error.message
    assert len(error.message) + len(error.remote_traceback) < LIMIT
    assert 'raise_long_message' in error.remote_traceback, 'the shortened traceback lost its frames'
    assert_healthy(server, failed=2)


def _authenticated_socket(server) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(30)
    sock.connect(read_infofile(server.infofile)['socket'])
    client_handshake(sock, authkey_of(server), FrameReader(max_body=0))
    return sock


def _read_frame(sock: socket.socket, reader: FrameReader) -> tuple[object, bytes] | None:
    """The next frame, or None when the server closes the connection."""
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return None
        frames = reader.feed(data)
        if frames:
            assert len(frames) == 1
            header, body = frames[0]
            return decode(header), body


def _raw_frame(header: bytes, body: bytes = b'') -> bytes:
    return struct.pack('!II', len(header), len(body)) + header + body


class _MakesDirectory:
    """Unpickling this makes a directory: proof of who unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


class _RecordsPid:
    """Unpickling this writes the pid of the process that does it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (jobs.record_pid, (self.path,))


def test_the_server_never_unpickles_a_message(coldoc_server, tmp_path):
    witness = tmp_path / 'made-by-unpickling'
    with _authenticated_socket(coldoc_server) as sock:
        sock.sendall(_raw_frame(pickle.dumps(_MakesDirectory(str(witness)))))
        reply = _read_frame(sock, FrameReader())
        assert not witness.exists(), 'the server unpickled a message header'
        assert reply is not None and isinstance(reply[0], Dropped)
        assert 'not JSON' in reply[0].message
        assert _read_frame(sock, FrameReader()) is None, 'the server kept the connection'
    assert_healthy(coldoc_server, protocol_errors=1)


def _submit_raw(sock: socket.socket, body: bytes) -> object:
    """Submit a call made by hand; return what the worker made of it."""
    task_id = new_task_id()
    sock.sendall(b''.join(Submit(task_id, 'default', 'hand-made call', True, 0, 0, None, 0).encode(body)))
    reply = _read_frame(sock, FrameReader())
    assert reply is not None
    message, outcome = reply
    assert message == Pushed(task_id), message
    return loads_outcome(outcome)


def test_a_call_is_unpickled_only_by_a_worker(coldoc_server, tmp_path):
    with _authenticated_socket(coldoc_server) as sock:
        garbage = _submit_raw(sock, b'this is not a pickle')
        assert isinstance(garbage.exception, ColdocTasksSerializationError)
        assert 'the worker cannot unpickle the call of task' in str(garbage.exception)

        record = tmp_path / 'pid'
        outcome = _submit_raw(sock, pickle.dumps((jobs.identity, (_RecordsPid(str(record)),), {})))
        assert outcome.exception is None, outcome.traceback
        unpickled_by = int(record.read_text())
        assert outcome.value == unpickled_by
        assert unpickled_by != coldoc_server.pid and unpickled_by in server_children(coldoc_server)
    assert_healthy(coldoc_server, protocol_errors=0)


def test_a_worker_that_sends_over_the_limit_is_killed(make_server):
    server = make_server(queues=('default:1:reuse',), max_message_size=LIMIT)
    rss_before = server_rss_kib(server)
    f = fork_for(server)()
    f.run(jobs.announce_huge_frame)
    with pytest.raises(ColdocTasksProcessLookupError,
                       match=r'its worker process \d+ was killed: it sent what the server does not accept .*over the '
                             r'limits'):
        f.wait(timeout=30)
    assert server_rss_kib(server) - rss_before < 20 * 1024
    assert_healthy(server, lost=1)
