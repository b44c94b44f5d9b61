"""The infofile: where clients find a coldoc task server.

A JSON file, mode 0600, replaced atomically (written to a temporary file in
the same directory, then renamed), holding::

    {"socket": "...", "authkey": "<hex>", "pid": 1234, "version": "0.2.0",
     "protocol": 1, "start_time": 1700000000.0, "logfile": "..." or null}

Beside it, ``INFOFILE.lock`` is held (``flock``) by the server for its whole
life: one server per infofile, and a leftover infofile of a dead server is
recognised by the lock being free.  ``INFOFILE.start.lock`` serialises the
processes that want to start a server for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

from ..exceptions import ColdocTasksException

PathLike = str | os.PathLike


class InfofileError(ColdocTasksException):
    """The infofile is missing, unreadable, or not an infofile."""


REQUIRED_KEYS = ('socket', 'authkey', 'pid')


def read_infofile(infofile: PathLike) -> dict[str, Any]:
    """Read and check an infofile; ``authkey`` is returned as bytes."""
    infofile = os.fspath(infofile)
    try:
        with open(infofile, encoding='utf-8') as stream:
            info = json.load(stream)
    except FileNotFoundError:
        raise InfofileError(f'the infofile {infofile} does not exist (is the task server started?)') from None
    except (OSError, ValueError) as exc:
        raise InfofileError(f'the infofile {infofile} cannot be read: {exc}') from None
    if not isinstance(info, dict) or any(key not in info for key in REQUIRED_KEYS):
        raise InfofileError(f'{infofile} is not a coldoc task server infofile (it lacks {", ".join(REQUIRED_KEYS)})')
    try:
        info['authkey'] = bytes.fromhex(info['authkey'])
    except (TypeError, ValueError):
        raise InfofileError(f'the authkey in {infofile} is not hexadecimal') from None
    return info


def write_infofile(infofile: PathLike, info: dict[str, Any]) -> None:
    """Write ``info`` atomically with mode 0600 (``authkey`` given as bytes)."""
    infofile = os.fspath(infofile)
    data = dict(info, authkey=info['authkey'].hex())
    directory = os.path.dirname(os.path.abspath(infofile))
    fd, temporary = tempfile.mkstemp(prefix='.infofile-', dir=directory)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
            stream.write('\n')
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, infofile)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def lock_path(infofile: PathLike) -> str:
    return os.fspath(infofile) + '.lock'


class ServerLock:
    """The lock a server holds on its infofile for its whole life."""

    def __init__(self, infofile: PathLike):
        self.path = lock_path(infofile)
        self._fd = -1

    def acquire(self) -> bool:
        """Take the lock without blocking; False if another process holds it."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # A server that stopped meanwhile unlinks the file it locked: a
            # lock on that file, no longer at the path, would lock nothing.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, b'%d\n' % os.getpid())
        return True

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1

    @property
    def fileno(self) -> int:
        return self._fd


def lock_holder(infofile: PathLike) -> int | None:
    """The pid of the live server holding the infofile's lock, or ``None``."""
    path = lock_path(infofile)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            content = os.read(fd, 64).strip()
            return int(content) if content.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def start_lock(infofile: PathLike) -> Iterator[None]:
    """Serialise the processes that start a server for ``infofile``.  The
    holder keeps it only while it starts a server, which is itself bounded by
    a timeout, so a blocking lock cannot wait for ever."""
    fd = os.open(os.fspath(infofile) + '.start.lock', os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
