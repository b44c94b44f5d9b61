"""The server's journal: what became of every task, on disk, so that a
server started again on it goes on where the last one stopped.

Why an append-only file of our own, and not ``sqlite3``: every write here is
an append of the records of one turn of the event loop, and every read is
the whole file at start; a database buys nothing for that and costs a
statement per record, its own files beside the journal (``-wal``, ``-shm``)
that it creates and removes itself, following links, and no control over
when it syncs.  Here one ``write`` and one ``fdatasync`` per turn carry every
record of the turn, and the one file is created and opened as every file of
the server is (0600, no link followed, never a file of somebody else).

The file::

    b'coldoc_tasks journal\\n'                 what the file is
    {"format": 1, "journal_id": ..., ...}\\n   one JSON line: the format, an id kept for life
    batch, batch, ...                          one per turn of the loop that had records
    zeros                                      allocated ahead of the batches, not written yet

    batch:   magic (u32) | length (u32) | crc32 of the payload (u32) | payload
    payload: records, each: kind (u8) | task id length (u16) | task id | fields of the kind

A batch is written whole and synced before anything the server does in that
turn leaves the process (a worker is told to run a task, a client gets an
outcome): so the journal is always ahead of what anybody saw.  A crash in the
middle of a write leaves a torn last batch, which was never synced, so none
of its effects were seen: it is cut off when the journal is opened again (and
logged).  A bad batch followed by more is corruption: the journal is refused.
The file is allocated ahead of its batches (:data:`ALLOCATE_AHEAD`), so that
a sync seldom has a new file size to write too; a journal closed in order
is cut to its batches.

Compaction: records of tasks that were collected or expired are dead; when
the file holds more than twice what is alive (and more than
:data:`COMPACT_FROM` bytes), the live records are copied into a new file,
which replaces the old one by a rename.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
import zlib

from ...exceptions import ColdocTasksJournalError
from ..safefiles import SAFE_FLAGS, UnsafePathError, check_own_file
from .journal_file import (
    ALLOCATE_AHEAD,
    BATCH,
    BATCH_MAGIC,
    DROPPED,
    FINAL,
    FINISHED,
    FORMAT,
    RECORD,
    REQUEUED,
    SERVED,
    SHARED,
    STARTED,
    SUBMIT,
    SUBMITTED,
    RecoveredTask,
    create,
    create_exclusive,
    encode_id,
    new_header,
    parse_header,
    read_all,
    records,
    remove_unfinished_compaction,
    replay,
    sync_directory,
    without_call,
    write_all,
    write_batch,
    zeros_from,
)

#: Compaction waits until the file is at least this big...
COMPACT_FROM = 1 << 20
#: ... or this big, when no task is alive in it.
COMPACT_EMPTY = 64 << 10

__all__ = ['Journal', 'RecoveredTask', 'FORMAT', 'COMPACT_FROM']

logger = logging.getLogger(__name__)

class Journal:
    """The journal at ``path``, opened and locked for this server; see
    :meth:`open`."""

    def __init__(self, path: str, fd: int, info: dict, size: int):
        self.path = path
        self._fd = fd
        self.journal_id: str = info['journal_id']
        self._pending: list[bytes] = []
        self._drops_this_turn: list[str] = []
        self._drops_sent: list[str] = []  # collected in an earlier turn, whose output went out
        self.size = size
        # task id -> bytes of its records in the file, and whether it is final
        self._live: dict[str, list] = {}
        self._live_bytes = 0
        #: sync every batch (else :meth:`sync` is called now and then, and a batch written is
        #: safe from a crash of the server, not from one of the machine until then)
        self.sync_each_batch = True
        self.unsynced = False
        self._allocated = size  # the file's size: written, then zeros allocated ahead
        self._allocating = True

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, versions: str) -> tuple[Journal, list[RecoveredTask]]:
        """Open (or create) the journal at ``path`` and read it back: the
        journal, and the tasks it holds, queued ones in their order.

        Raise :class:`ColdocTasksJournalError` naming the problem if the file
        is not a journal, is of another format, is corrupt, or is locked by
        another server; :class:`UnsafePathError` if it is a link or not ours.
        ``versions`` is written in a new journal's header, for people."""
        path = os.path.abspath(path)
        remove_unfinished_compaction(path)
        try:
            fd = os.open(path, os.O_RDWR | SAFE_FLAGS)
        except FileNotFoundError:
            fd = create(path, new_header(versions))
        except OSError as exc:
            if exc.errno == 40:  # ELOOP
                raise UnsafePathError(path, 'it is a symbolic link') from None
            raise
        try:
            os.set_blocking(fd, True)
            check_own_file(path, os.fstat(fd))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ColdocTasksJournalError(
                    f'the journal {path} is locked by another server (one journal serves one server)') from None
            data = read_all(fd)
            info, start = parse_header(path, data)
            tasks, end, live = replay(path, data, start)
            if not zeros_from(data, end):
                logger.warning('journal %s: cut off %d bytes of a batch torn by a crash (never synced, so never '
                               'acted upon)', path, len(data) - end)
                os.ftruncate(fd, end)
                os.fsync(fd)
            os.lseek(fd, end, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        journal = cls(path, fd, info, end)
        journal._allocated = os.fstat(fd).st_size
        journal._live = live
        journal._live_bytes = sum(entry[0] for entry in live.values())
        queued = sorted(tasks.values(), key=lambda task: task.order)
        return journal, queued

    # -- records -------------------------------------------------------------------------

    def _add(self, kind: int, task_id: str, fields: bytes = b'', final: bool = False) -> None:
        tid = encode_id(task_id)
        record = RECORD.pack(kind, len(tid)) + tid + fields
        self._pending.append(record)
        entry = self._live.get(task_id)
        if entry is None:
            if kind != SUBMITTED:
                return
            entry = self._live[task_id] = [0, False]
        entry[0] += len(record)
        entry[1] = entry[1] or final
        self._live_bytes += len(record)

    def submitted(self, task_id: str, header: bytes, call: bytes, submitted: float) -> None:
        """A task was accepted into a queue (``header``: its ``Submit`` as encoded)."""
        if task_id not in self._live:
            self._add(SUBMITTED, task_id, SUBMIT.pack(submitted, len(header), len(call)) + header + call)

    def started(self, task_id: str) -> None:
        if task_id in self._live:
            self._add(STARTED, task_id)

    def requeued(self, task_id: str) -> None:
        """A task whose worker was lost is queued again (a retry)."""
        if task_id in self._live:
            self._add(REQUEUED, task_id)

    def shared(self, task_id: str) -> None:
        if task_id in self._live:
            self._add(SHARED, task_id)

    def served(self, task_id: str, served: int) -> None:
        """Who had a shared task's outcome so far (bits), while it is kept for the others."""
        if task_id in self._live:
            self._add(SERVED, task_id, bytes((served,)))

    def finished(self, task_id: str, state: str, finished: float, outcome: bytes | None,
                 lost_message: str | None) -> None:
        entry = self._live.get(task_id)
        if entry is not None and not entry[1]:
            data = outcome if outcome is not None else (lost_message or '').encode('utf-8')
            self._add(FINISHED, task_id, FINAL.pack(finished, outcome is not None, len(data))
                      + state.encode('ascii') + b'\0' + data, final=True)

    def dropped(self, task_id: str) -> None:
        """A task's outcome was collected, or expired.  Recorded once the
        output of this turn has left the server (see :meth:`commit`)."""
        if task_id in self._live:
            self._drops_this_turn.append(task_id)

    def commit(self, output_sent: bool, output_follows: bool = True) -> None:
        """Write and sync the records of this turn, in one batch, before the
        output of the turn leaves the server.

        ``output_sent``: every peer took all the server sent it so far.  A
        collection is written only at a commit after the turn that collected
        (whose output is sent after its commit) and with ``output_sent``: so
        an outcome cut off on its way to the waiter by a crash is still in
        the journal, for the waiter to ask again.

        ``output_follows``: this turn sends something; else the batch is
        written but its sync waits for the next batch that is followed by
        output (whose sync covers it): what no peer saw needs no sync."""
        if output_sent and self._drops_sent:
            for task_id in self._drops_sent:
                entry = self._live.pop(task_id, None)
                if entry is not None:
                    self._live_bytes -= entry[0]
                    tid = encode_id(task_id)
                    self._pending.append(RECORD.pack(DROPPED, len(tid)) + tid)
            self._drops_sent.clear()
        if self._drops_this_turn:
            self._drops_sent += self._drops_this_turn
            self._drops_this_turn.clear()
        if not self._pending:
            if self.unsynced and self.sync_each_batch and output_follows:
                self.sync()
            return
        payload = b''.join(self._pending)
        self._pending.clear()
        try:
            if self._allocating and self.size + BATCH.size + len(payload) > self._allocated:
                self._allocate(self.size + BATCH.size + len(payload) + ALLOCATE_AHEAD)
            write_all(self._fd, BATCH.pack(BATCH_MAGIC, len(payload), zlib.crc32(payload)) + payload)
            if self.sync_each_batch and output_follows:
                os.fdatasync(self._fd)
                self.unsynced = False
            else:
                self.unsynced = True
        except OSError as exc:
            # A batch written in part would be followed by the next ones:
            # cut it off, so that the file stays whole, and stop the server
            # (it cannot keep its promise without its journal).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.size)
                self._allocated = self.size
            raise ColdocTasksJournalError(f'cannot write the journal {self.path}: {exc}') from exc
        self.size += BATCH.size + len(payload)

    def _allocate(self, size: int) -> None:
        try:
            os.posix_fallocate(self._fd, self._allocated, size - self._allocated)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            self._allocating = False  # the file system cannot: the file grows by its writes
            logger.info('journal %s: its file system cannot allocate ahead (%s)', self.path, exc)
        else:
            self._allocated = size

    def sync(self) -> None:
        """Sync what was written (when batches are not synced each)."""
        if self.unsynced:
            self.unsynced = False
            os.fdatasync(self._fd)

    @property
    def live_bytes(self) -> int:
        return self._live_bytes

    # -- compaction ----------------------------------------------------------------------

    def wants_compaction(self) -> bool:
        """Over :data:`COMPACT_FROM` and more than twice what is alive; or
        over :data:`COMPACT_EMPTY` with nothing alive (then it is cheap)."""
        if not self._live_bytes and not self._drops_sent and not self._drops_this_turn:
            return self.size > COMPACT_EMPTY
        return self.size > COMPACT_FROM and self.size > 2 * self._live_bytes + 4096

    def compact(self) -> None:
        """Copy the live records into a new file and put it in place of
        this one (after :meth:`commit`: nothing is pending)."""
        started = time.monotonic()
        before = self.size
        data = read_all(self._fd, self.size)
        info, start = parse_header(self.path, data)
        temporary = self.path + '.compact'
        fd = create_exclusive(temporary, data[:start])
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            size = start
            chunk: list[bytes] = []
            chunk_bytes = 0
            for kind, task_id, record in records(self.path, data, start):
                entry = self._live.get(task_id)
                if entry is None:
                    continue
                if kind == SUBMITTED and entry[1]:  # a final task needs its call no more
                    record = without_call(record)
                chunk.append(record)
                chunk_bytes += len(record)
                if chunk_bytes > 1 << 20:
                    size += write_batch(fd, chunk)
                    chunk, chunk_bytes = [], 0
            if chunk:
                size += write_batch(fd, chunk)
            os.fsync(fd)
            os.rename(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            os.close(fd)
            raise
        sync_directory(self.path)
        # The new file takes the old one's descriptor number, which the
        # server's workers know to close; its lock goes along.
        os.dup2(fd, self._fd, inheritable=False)
        os.close(fd)
        fd = self._fd
        os.lseek(fd, size, os.SEEK_SET)
        self.size = self._allocated = size
        for entry in self._live.values():
            entry[0] = 0
        self._live_bytes = 0
        for _, task_id, record in records(self.path, read_all(fd, size), start):
            entry = self._live.get(task_id)
            if entry is not None:
                entry[0] += len(record)
                self._live_bytes += len(record)
        logger.info('journal %s compacted from %d to %d bytes in %.3f s', self.path, before, size,
                    time.monotonic() - started)

    @property
    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            if self._allocated > self.size:  # a journal closed in order holds no zeros ahead
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self.size)
                    os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


