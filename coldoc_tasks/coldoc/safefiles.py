"""The server's files, opened and created so that nobody else's is written.

A server may run as a more privileged user than whoever can write in the
directory of its infofile.  So every file it writes (the lock, the start
lock, the infofile, the log) and the directory of its socket go through this
module, which:

- never follows a symbolic link at the last component of a path
  (``O_NOFOLLOW``; a link there is refused, naming it, its target untouched);
- creates with ``O_EXCL``, mode 0600 (directories 0700);
- opens an existing file only if it is a regular file of ours: owned by this
  user, with one link (a hard link to somebody's file is as dangerous as a
  symbolic one), and, for the server's own files, with the content it writes;
- removes a socket only when it is stale (nothing listens on it).

Every refusal is an :class:`UnsafePathError` naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import os
import socket
import stat
from collections.abc import Callable

from ..exceptions import UnsafePathError

PathLike = str | os.PathLike

#: Flags added to every open here.
SAFE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO must not block us


def describe(mode: int) -> str:
    """What kind of file ``mode`` (an ``st_mode``) is, in words."""
    for test, name in ((stat.S_ISLNK, 'a symbolic link'), (stat.S_ISDIR, 'a directory'),
                       (stat.S_ISSOCK, 'a socket'), (stat.S_ISFIFO, 'a named pipe'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISREG, 'a regular file')):
        if test(mode):
            return name
    return 'a special file'


def _refusal(path: PathLike, exc: OSError) -> UnsafePathError | OSError:
    """Turn the error of an ``O_NOFOLLOW`` open into a refusal naming the link."""
    if exc.errno == errno.ELOOP:
        return UnsafePathError(path, 'it is a symbolic link')
    return exc


def check_own_file(path: PathLike, info: os.stat_result) -> None:
    """Refuse ``path`` (whose ``fstat`` is ``info``) unless it is a regular
    file of this user with a single link."""
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePathError(path, f'it is {describe(info.st_mode)}, not a regular file')
    if info.st_uid != os.geteuid():
        raise UnsafePathError(path, f'it belongs to another user (uid {info.st_uid})')
    if info.st_nlink != 1:
        raise UnsafePathError(path, f'it has {info.st_nlink} hard links')


def open_own_file(path: PathLike, flags: int = os.O_RDWR, *, create: bool = True,
                  recognise: Callable[[int], bool] | None = None, what: str = 'file') -> tuple[int, bool]:
    """Open ``path`` without following links; return ``(fd, created)``.

    A missing file is created (``O_EXCL``, 0600) if ``create``.  An existing
    one must pass :func:`check_own_file` and, if given, ``recognise(fd)``
    (which says whether its content is what we write there): else
    :class:`UnsafePathError`.  ``what`` names the file in that error.
    """
    flags = (flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)) | SAFE_FLAGS
    while True:
        if create:
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _refusal(path, exc) from None
            else:
                _blocking(fd)
                return fd, True
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            if create:
                continue  # removed between the two opens: create it after all
            raise
        except OSError as exc:
            raise _refusal(path, exc) from None
        try:
            check_own_file(path, os.fstat(fd))
            if recognise is not None and not recognise(fd):
                raise UnsafePathError(path, f'it is not a {what} of coldoc_tasks')
        except BaseException:
            os.close(fd)
            raise
        _blocking(fd)
        return fd, False


def _blocking(fd: int) -> None:
    os.set_blocking(fd, True)


def read_own_file(path: PathLike, limit: int = 1 << 20) -> bytes:
    """The content of an existing regular file, read without following a
    link at ``path`` (up to ``limit`` bytes: more is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | SAFE_FLAGS)
    except OSError as exc:
        raise _refusal(path, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePathError(path, f'it is {describe(info.st_mode)}, not a regular file')
        if info.st_size > limit:
            raise UnsafePathError(path, f'it holds {info.st_size} bytes, too many for a file of ours')
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b''.join(chunks)
    finally:
        os.close(fd)


def replace_file(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, mode 0600: a temporary file
    created exclusively beside it, synced, then renamed over it.  The caller
    has checked that what is at ``path`` may be replaced."""
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f'.{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp')
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, 'wb') as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# -- directories ----------------------------------------------------------------------


def check_private_directory(path: PathLike) -> None:
    """Refuse ``path`` unless it is a directory (not a link) of this user
    that nobody else can enter (0700)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePathError(path, f'it is {describe(info.st_mode)}, not a directory')
    if info.st_uid != os.geteuid():
        raise UnsafePathError(path, f'the directory belongs to another user (uid {info.st_uid})')
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafePathError(path, f'the directory is open to others (mode {stat.S_IMODE(info.st_mode):o})')


def make_private_directory(path: PathLike) -> None:
    """Create the directory ``path``, 0700 (its parent must exist); raise
    ``FileExistsError`` if anything is there."""
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700, follow_symlinks=False)  # whatever the umask
    check_private_directory(path)


def remove_own_directory(path: PathLike) -> bool:
    """Remove the directory ``path`` that we made, if it is still ours and
    empty; True if it is gone.  Anything left in it is left alone."""
    try:
        check_private_directory(path)
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except (UnsafePathError, OSError):
        return False
    return True


# -- sockets ------------------------------------------------------------------------------


def socket_answers(path: PathLike) -> bool:
    """True if something accepts connections on the AF_UNIX socket ``path``
    now (a connection attempt that never blocks: a server whose backlog is
    full, or that is stopped, counts as answering)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(os.fspath(path))
        except (BlockingIOError, InterruptedError):
            return True
        except (ConnectionRefusedError, FileNotFoundError):
            return False
    return True


def clear_socket_path(path: PathLike) -> None:
    """Make ``path`` free for a new socket: nothing there, or a stale socket
    (which is removed).  A socket that a server answers on, a regular file, a
    directory, a link (anything else) is refused, naming it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise UnsafePathError(path, f'it is {describe(info.st_mode)}, not a socket')
    try:
        if socket_answers(path):
            raise UnsafePathError(path, 'a server answers on this socket')
    except PermissionError:
        raise UnsafePathError(path, 'a socket that cannot be probed (permission denied)') from None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# -- the log ------------------------------------------------------------------------------


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log whose files are 0600, opened without following links:
    an existing log is appended to only if it is a regular file of ours."""

    def _open(self):  # noqa: ANN202 - the signature of logging.FileHandler
        fd, created = open_own_file(self.baseFilename, os.O_WRONLY | os.O_APPEND, what='log')
        if not created:
            os.fchmod(fd, 0o600)  # a log made by an older version, readable by others
        return os.fdopen(fd, 'a', encoding=self.encoding, errors=self.errors)
