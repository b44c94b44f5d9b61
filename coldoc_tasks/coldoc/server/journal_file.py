"""The journal's file: its header, its batches of records, reading it back.

See :mod:`.journal` for what it holds and why.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator

from ...exceptions import ColdocTasksJournalError
from ..safefiles import SAFE_FLAGS, UnsafePathError, check_own_file

logger = logging.getLogger(__name__)

MAGIC = b'coldoc_tasks journal\n'
#: The format of the records this version writes; a journal of a format
#: outside :data:`READ_FORMATS` is refused.
FORMAT = 2
#: Format 2 added the record of who got a shared task's outcome.
READ_FORMATS = (1, 2)
BATCH = struct.Struct('<III')
BATCH_MAGIC = 0x43544a42
RECORD = struct.Struct('<BH')
SUBMIT = struct.Struct('<dII')  # submitted, header length, body length
FINAL = struct.Struct('<dBI')  # finished, has an outcome, data length
#: The longest header line read from a journal.
MAX_HEADER_LINE = 4096
#: Bytes allocated ahead of the batches: a write within the file's size
#: needs no change of its size, which makes ``fdatasync`` cheaper (about
#: 120 against 190 µs on ext4).  What was allocated and not written reads
#: as zeros, which end the batches.
ALLOCATE_AHEAD = 16 << 10

SUBMITTED, STARTED, REQUEUED, FINISHED, DROPPED, SHARED, SERVED = range(1, 8)


@dataclasses.dataclass
class RecoveredTask:
    """A task as the journal left it: its submission (the ``Submit`` header
    as it came, and the call), and what became of it since."""

    task_id: str
    header: bytes
    call: bytes
    submitted: float
    order: int  # the journal's order of its last entry into a queue
    running: bool = False
    losses: int = 0
    shared: bool = False
    served: int = 0  # who had its outcome (the server's SERVED_* bits)
    state: str | None = None  # a final state, once it has one
    finished: float | None = None
    outcome: bytes | None = None
    lost_message: str | None = None


def encode_id(task_id: str) -> bytes:
    return task_id.encode('utf-8')


# -- the file ------------------------------------------------------------------------------


def new_header(versions: str) -> bytes:
    info = {'format': FORMAT, 'journal_id': os.urandom(16).hex(), 'created': time.time(), 'written_by': versions}
    return MAGIC + json.dumps(info).encode('utf-8') + b'\n'


def create_exclusive(path: str, content: bytes) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | SAFE_FLAGS, 0o600)
    except FileExistsError:
        raise UnsafePathError(path, 'a file appeared there meanwhile') from None
    os.set_blocking(fd, True)
    try:
        write_all(fd, content)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def create(path: str, header: bytes) -> int:
    """Create the journal with its header, atomically: a partial file is
    never seen at ``path`` (it is made aside, then linked in place, which
    fails rather than replace what appeared there meanwhile)."""
    temporary = f'{path}.{os.getpid()}.{os.urandom(4).hex()}.new'
    fd = create_exclusive(temporary, header)
    try:
        os.link(temporary, path)
    except FileExistsError:
        os.close(fd)
        raise UnsafePathError(path, 'a file appeared there while the journal was being created') from None
    finally:
        os.unlink(temporary)
    sync_directory(path)
    return fd


def remove_unfinished_compaction(path: str) -> None:
    """A compaction that a crash cut short leaves its new file beside the
    journal, not renamed yet: remove it, but only if it is ours (a journal
    file of this user); anything else there is refused."""
    temporary = path + '.compact'
    try:
        fd = os.open(temporary, os.O_RDONLY | SAFE_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ColdocTasksJournalError(f'the journal {path}: {temporary} is in the way ({exc}); it was left '
                                      f'untouched') from None
    try:
        check_own_file(temporary, os.fstat(fd))
        if os.pread(fd, len(MAGIC), 0) != MAGIC:
            raise UnsafePathError(temporary, 'it is not a journal of coldoc_tasks')
    finally:
        os.close(fd)
    logger.warning('journal %s: removing %s, left by a compaction that a crash cut short', path, temporary)
    os.unlink(temporary)


def sync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(path) or '.', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_batch(fd: int, records: list[bytes]) -> int:
    payload = b''.join(records)
    write_all(fd, BATCH.pack(BATCH_MAGIC, len(payload), zlib.crc32(payload)) + payload)
    return BATCH.size + len(payload)


def read_all(fd: int, size: int | None = None) -> bytes:
    """The file's first ``size`` bytes (all of it by default)."""
    if size is None:
        size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b''.join(chunks)


def parse_header(path: str, data: bytes) -> tuple[dict, int]:
    if not data.startswith(MAGIC):
        raise ColdocTasksJournalError(f'{path} is not a journal of coldoc_tasks (it does not start as one); '
                                      f'it was left untouched')
    end = data.find(b'\n', len(MAGIC), len(MAGIC) + MAX_HEADER_LINE)
    try:
        if end < 0:
            raise ValueError('no end of line')
        info = json.loads(data[len(MAGIC):end])
        journal_format = info['format']
        str(info['journal_id'])
    except (ValueError, KeyError, TypeError) as exc:
        raise ColdocTasksJournalError(f'the journal {path} has a damaged header ({exc})') from None
    if journal_format not in READ_FORMATS:
        raise ColdocTasksJournalError(
            f'the journal {path} is of format {journal_format!r} (written by {info.get("written_by", "?")}); '
            f'this version of coldoc_tasks reads format {" or ".join(map(str, READ_FORMATS))} only: start the '
            f'version that wrote it to drain it, or move it away')
    return info, end + 1


def batches(path: str, data: bytes, start: int) -> Iterator[tuple[int, int, int]]:
    """(payload start, payload end, batch end) of each whole batch; stops at
    a torn last batch and where only zeros follow (allocated ahead, never
    written); raises on a bad batch followed by more data."""
    offset = start
    size = len(data)
    while offset < size:
        if zeros_from(data, offset):
            return
        if size - offset < BATCH.size:
            return  # torn
        magic, length, crc = BATCH.unpack_from(data, offset)
        end = offset + BATCH.size + length
        if end > size:
            if magic != BATCH_MAGIC:
                raise corrupt(path, offset, 'a batch does not start where one should')
            return  # torn: a batch cut short at the end of the file
        if magic != BATCH_MAGIC or zlib.crc32(data[offset + BATCH.size:end]) != crc:
            if magic == BATCH_MAGIC and zeros_from(data, end):
                return  # torn: the last batch, written in part
            raise corrupt(path, offset, 'a batch fails its checksum')
        yield offset + BATCH.size, end, end
        offset = end


def zeros_from(data: bytes, offset: int) -> bool:
    """Whether ``data`` holds nothing but zeros from ``offset`` on."""
    return data.count(0, offset) == len(data) - offset


def corrupt(path: str, offset: int, what: str) -> ColdocTasksJournalError:
    return ColdocTasksJournalError(f'the journal {path} is corrupt: {what} at byte {offset}; it was left '
                                   f'untouched (move it away to start without it)')


def records(path: str, data: bytes, start: int) -> Iterator[tuple[int, str, bytes]]:
    for begin, end, _ in batches(path, data, start):
        offset = begin
        while offset < end:
            kind, id_length = RECORD.unpack_from(data, offset)
            id_end = offset + RECORD.size + id_length
            task_id = data[offset + RECORD.size:id_end].decode('utf-8')
            if kind == SUBMITTED:
                _, header_length, call_length = SUBMIT.unpack_from(data, id_end)
                record_end = id_end + SUBMIT.size + header_length + call_length
            elif kind == FINISHED:
                _, _, data_length = FINAL.unpack_from(data, id_end)
                record_end = data.index(b'\0', id_end + FINAL.size) + 1 + data_length
            elif kind in (STARTED, REQUEUED, DROPPED, SHARED):
                record_end = id_end
            elif kind == SERVED:
                record_end = id_end + 1
            else:
                raise corrupt(path, offset, f'a record of unknown kind {kind}')
            if record_end > end:
                raise corrupt(path, offset, 'a record overruns its batch')
            yield kind, task_id, data[offset:record_end]
            offset = record_end


def without_call(record: bytes) -> bytes:
    _, id_length = RECORD.unpack_from(record)
    id_end = RECORD.size + id_length
    submitted, header_length, _ = SUBMIT.unpack_from(record, id_end)
    header = record[id_end + SUBMIT.size:id_end + SUBMIT.size + header_length]
    return record[:id_end] + SUBMIT.pack(submitted, header_length, 0) + header


def replay(path: str, data: bytes, start: int) -> tuple[dict[str, RecoveredTask], int, dict[str, list]]:
    """The tasks the records leave alive, where the whole batches end, and
    the bytes of each live task's records."""
    tasks: dict[str, RecoveredTask] = {}
    live: dict[str, list] = {}
    end = start
    for batch in batches(path, data, start):
        end = batch[2]
    order = 0
    for kind, task_id, record in records(path, data, start):
        order += 1
        fields = RECORD.size + len(encode_id(task_id))
        if kind == SUBMITTED:
            submitted, header_length, call_length = SUBMIT.unpack_from(record, fields)
            header_start = fields + SUBMIT.size
            tasks[task_id] = RecoveredTask(task_id, record[header_start:header_start + header_length],
                                           record[header_start + header_length:], submitted, order)
            live[task_id] = [0, False]
        task = tasks.get(task_id)
        if task is None:
            continue  # a record after the task was dropped: nothing to keep
        live[task_id][0] += len(record)
        if kind == STARTED:
            task.running = True
        elif kind == REQUEUED:
            task.running = False
            task.losses += 1
            task.order = order
        elif kind == SHARED:
            task.shared = True
        elif kind == SERVED:
            task.served |= record[fields]
        elif kind == FINISHED:
            finished, has_outcome, data_length = FINAL.unpack_from(record, fields)
            state_end = record.index(b'\0', fields + FINAL.size)
            task.state = record[fields + FINAL.size:state_end].decode('ascii')
            task.finished = finished
            value = record[state_end + 1:]
            task.outcome, task.lost_message = (value, None) if has_outcome else (None, value.decode('utf-8'))
            task.running = False
            task.call = b''
            live[task_id][1] = True
        elif kind == DROPPED:
            del tasks[task_id]
            del live[task_id]
    return tasks, end, live
