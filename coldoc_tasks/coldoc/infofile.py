"""The infofile: where clients find a coldoc task server.

A JSON file, mode 0600, replaced atomically (written to a temporary file in
the same directory, then renamed), holding::

    {"socket": "...", "authkey": "<hex>", "pid": 1234, "version": "0.2.0",
     "protocol": 1, "start_time": 1700000000.0, "logfile": "..." or null,
     "socket_directory": "..." or null, "stop_grace": 10.0, "terminate_grace": 2.0}

``socket_directory`` is set when a server of this infofile made the
directory of the socket: the server that stops removes it.

Beside it, ``INFOFILE.lock`` is held (``flock``) by the server for its whole
life, and holds its pid: one server per infofile, and a leftover infofile of
a dead server is recognised by the lock being free.  ``INFOFILE.start.lock``
(empty) serialises the processes that want to start a server for it.  All
three are created and opened through :mod:`.safefiles`: never through a
link, never when they are not files of ours.

An infofile of coldoc_tasks 0.2 (see :mod:`.legacy`) is recognised too:
:func:`read_infofile` raises :class:`LegacyInfofileError` for it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from ..exceptions import InfofileError, InfofileMissingError, LegacyInfofileError
from .legacy import is_legacy_text, legacy_from_bytes
from .safefiles import SAFE_FLAGS, UnsafePathError, open_own_file, replace_file

PathLike = str | os.PathLike


REQUIRED_KEYS = ('socket', 'authkey', 'pid')


def parse_infofile(infofile: PathLike, data: bytes) -> dict[str, Any]:
    """The content of an infofile of ours; raise :class:`InfofileError` if
    ``data`` is not one (:class:`LegacyInfofileError` if it is 0.2's)."""
    infofile = os.fspath(infofile)
    try:
        info = json.loads(data)
    except ValueError:
        info = None
    if info is None:
        if is_legacy_text(data):
            raise LegacyInfofileError(f'{infofile} is an infofile of coldoc_tasks 0.2, whose servers this '
                                      f'version does not talk to', legacy_from_bytes(infofile, data), infofile)
        raise InfofileError(f'the infofile {infofile} cannot be read: it is neither JSON nor an infofile of '
                            f'coldoc_tasks 0.2')
    if not isinstance(info, dict) or any(key not in info for key in REQUIRED_KEYS):
        raise InfofileError(f'{infofile} is not a coldoc task server infofile (it lacks {", ".join(REQUIRED_KEYS)})')
    try:
        info['authkey'] = bytes.fromhex(info['authkey'])
    except (TypeError, ValueError):
        raise InfofileError(f'the authkey in {infofile} is not hexadecimal') from None
    return info


def read_infofile(infofile: PathLike) -> dict[str, Any]:
    """Read and check an infofile; ``authkey`` is returned as bytes."""
    infofile = os.fspath(infofile)
    try:
        with open(infofile, 'rb') as stream:
            data = stream.read(1 << 20)
    except FileNotFoundError:
        raise InfofileMissingError(f'the infofile {infofile} does not exist (is the task server started?)') from None
    except PermissionError:
        raise InfofileError(f'no permission to read the infofile {infofile}') from None
    except OSError as exc:
        raise InfofileError(f'the infofile {infofile} cannot be read: {exc}') from None
    return parse_infofile(infofile, data)


def replaceable_infofile(infofile: PathLike) -> tuple[str, dict[str, Any]]:
    """What a starting server finds at ``infofile``, which it may replace:
    ``('missing', {})`` (nothing there, or an empty file), ``('current', info)``
    or ``('legacy', info)`` (an infofile of 0.2).  Anything else there (a link, another user's file, a
    file that is no infofile) raises :class:`UnsafePathError` naming it."""
    try:
        fd, _ = open_own_file(infofile, os.O_RDONLY, create=False, what='infofile')
    except FileNotFoundError:
        return 'missing', {}
    try:
        with os.fdopen(fd, 'rb') as stream:
            data = stream.read(1 << 20)
    except OSError as exc:
        raise InfofileError(f'the infofile {os.fspath(infofile)} cannot be read: {exc}') from None
    if not data.strip():
        # An empty file of ours holds nothing to lose: a name reserved for
        # the infofile (0.2's users make one with tempfile, for instance).
        return 'missing', {}
    try:
        return 'current', parse_infofile(infofile, data)
    except LegacyInfofileError as exc:
        return 'legacy', exc.info
    except InfofileError:
        raise UnsafePathError(infofile, 'it is not an infofile (neither of this version of coldoc_tasks nor '
                              'of 0.2)') from None


def write_infofile(infofile: PathLike, info: dict[str, Any]) -> None:
    """Write ``info`` atomically with mode 0600 (``authkey`` given as bytes)."""
    data = dict(info, authkey=info['authkey'].hex())
    replace_file(infofile, (json.dumps(data, indent=1, sort_keys=True) + '\n').encode('utf-8'))


def lock_path(infofile: PathLike) -> str:
    return os.fspath(infofile) + '.lock'


def _holds_a_pid(fd: int) -> bool:
    """The content of a lock file: empty, or a pid and a newline."""
    content = os.pread(fd, 64, 0)
    return len(content) < 32 and (not content or content.rstrip(b'\n').isdigit())


def _is_empty(fd: int) -> bool:
    return os.fstat(fd).st_size == 0


class ServerLock:
    """The lock a server holds on its infofile for its whole life."""

    def __init__(self, infofile: PathLike):
        self.path = lock_path(infofile)
        self._fd = -1

    def acquire(self) -> bool:
        """Take the lock without blocking; False if another process holds it."""
        while True:
            fd, _ = open_own_file(self.path, os.O_RDWR, recognise=_holds_a_pid, what='lock file')
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # A server that stopped meanwhile unlinks the file it locked: a
            # lock on that file, no longer at the path, would lock nothing.
            try:
                if os.lstat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, b'%d\n' % os.getpid(), 0)
        return True

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                if os.lstat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    os.unlink(self.path)
            os.close(self._fd)
            self._fd = -1

    @property
    def fileno(self) -> int:
        return self._fd


def _open_lock_for_reading(infofile: PathLike) -> int | None:
    try:
        fd = os.open(lock_path(infofile), os.O_RDONLY | SAFE_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # a link is no lock of ours: nobody holds it
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _is_held(fd: int) -> bool:
    """True if another process holds the lock on ``fd`` (tried, never kept)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def lock_holder(infofile: PathLike) -> int | None:
    """The pid of the live server holding the infofile's lock, or ``None``."""
    fd = _open_lock_for_reading(infofile)
    if fd is None:
        return None
    try:
        if not _is_held(fd):
            return None
        content = os.pread(fd, 64, 0).strip()
        return int(content) if content.isdigit() else -1
    finally:
        os.close(fd)


def verified_lock_holder(infofile: PathLike) -> int | None:
    """The pid of the process that holds the infofile's lock now, as the
    kernel says (``/proc/locks``) and as the lock file says; ``None`` if the
    lock is free.  Raise :class:`InfofileError` if the two disagree: then
    the pid cannot be trusted to be the server's."""
    fd = _open_lock_for_reading(infofile)
    if fd is None:
        return None
    try:
        if not _is_held(fd):
            return None
        content = os.pread(fd, 64, 0).strip()
        info = os.fstat(fd)
    finally:
        os.close(fd)
    holders = flock_holders(info.st_dev, info.st_ino)
    written = int(content) if content.isdigit() else None
    if written is None or holders != {written}:
        raise InfofileError(f'the lock {lock_path(infofile)} is held by pid(s) '
                            f'{", ".join(map(str, sorted(holders))) or "unknown"} but names pid {written}: '
                            f'which process is the server cannot be told')
    return written


def flock_holders(device: int, inode: int) -> set[int]:
    """The pids holding an ``flock`` on the file ``(device, inode)``, from
    ``/proc/locks`` (lines such as ``1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF``).

    Some filesystems (btrfs subvolumes, overlays) report to ``stat`` another
    device number than the one listed there: if no lock matches both, the
    locks on that inode number on any device are taken."""
    wanted = f'{os.major(device):02x}:{os.minor(device):02x}:{inode}'
    exact, same_inode = set(), set()
    with open('/proc/locks', encoding='ascii', errors='replace') as stream:
        for line in stream:
            fields = line.split()
            if len(fields) < 6 or fields[1] != 'FLOCK' or not fields[4].isdigit():
                continue
            if fields[5] == wanted:
                exact.add(int(fields[4]))
            elif fields[5].rpartition(':')[2] == str(inode):
                same_inode.add(int(fields[4]))
    return exact or same_inode


@contextlib.contextmanager
def start_lock(infofile: PathLike) -> Iterator[None]:
    """Serialise the processes that start a server for ``infofile``.  The
    holder keeps it only while it starts a server, which is itself bounded by
    a timeout, so a blocking lock cannot wait for ever."""
    fd, _ = open_own_file(os.fspath(infofile) + '.start.lock', os.O_RDWR, recognise=_is_empty,
                          what='start lock')
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

