"""Test helpers: a rendezvous with tasks, process inspection."""

from __future__ import annotations

import os
import select
import shutil
import socket
import tempfile


class Rendezvous:
    """An AF_UNIX socket the test listens on; a task running
    :func:`tests.jobs.rendezvous` connects, sends its pid and blocks until
    released.  Every wait here is bounded."""

    def __init__(self):
        # AF_UNIX paths are limited to about 100 bytes: pytest's tmp_path is too long.
        self.directory = tempfile.mkdtemp(prefix='ct-rdv-')
        self.address = os.path.join(self.directory, 's')
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(512)
        self.connections: list[socket.socket] = []

    def accept(self, timeout: float = 20.0) -> tuple[socket.socket, list[int]]:
        """Wait for one task to arrive; return its connection and the pids it sent."""
        self.listener.settimeout(timeout)
        try:
            conn, _ = self.listener.accept()
        except TimeoutError:
            raise AssertionError(f'no task reached the rendezvous within {timeout} s') from None
        conn.settimeout(timeout)
        data = b''
        while not data.endswith(b'\n'):
            chunk = conn.recv(64)
            if not chunk:
                raise AssertionError('a task closed the rendezvous before sending its pid')
            data += chunk
        self.connections.append(conn)
        return conn, [int(pid) for pid in data.split()]

    def release(self, conn: socket.socket) -> None:
        conn.sendall(b'go')
        conn.close()

    def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.listener.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def wait_process_gone(pid: int, timeout: float = 10.0) -> bool:
    """Block until process ``pid`` has exited (without polling: a pidfd);
    True if it did within ``timeout``.  A zombie counts as exited."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(pidfd)


def process_exists(pid: int) -> bool:
    """True if ``pid`` is a live process or a zombie."""
    return os.path.exists(f'/proc/{pid}')


def open_fd_count() -> int:
    return len(os.listdir('/proc/self/fd'))
