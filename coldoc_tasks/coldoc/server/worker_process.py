"""The life of a worker process, forked from the server.

A worker reads ``["run", task_id]`` frames carrying a pickled call from its
socket, runs the call, sends the task's progress reports (coalesced: see
:mod:`coldoc_tasks.progress`) as ``["progress", task_id, ...]``, and answers
``["done", task_id, failed, rss]`` with the encoded outcome; ``["exit"]`` or the end of its socket end it.
``rss`` is the worker's resident memory once the task is over, if the server
asked for it (it recycles a worker over ``max_memory_per_worker``).  A worker in
*fresh* mode runs one task and exits.  Unpickling the call and pickling the
outcome happen here, never in the server; so does the check of the result's
size against the server's limit, so that the server never receives a result
over it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterable

from ...exceptions import ColdocTasksException, ColdocTasksSerializationError
from ...outcome import Outcome, call_capturing, describe_callable, encode_outcome, loads_call
from ...progress import Progress, reporting
from .. import context
from ..messages import Done, Exit, ProgressReport, Run, decode
from ..protocol import FrameReader, RecvBuffer, sendall_pieces
from .memory import resident_bytes

logger = logging.getLogger(__name__)

#: Callables run in a worker around every task, as ``hook(task_id)``: used to
#: close database connections that must not be shared between processes.
BEFORE_TASK_HOOKS: list[Callable[[str], None]] = []
AFTER_TASK_HOOKS: list[Callable[[str], None]] = []
#: Callables run in the server, with no argument, just before it forks a
#: worker: used to close connections a worker must not inherit.
BEFORE_FORK_HOOKS: list[Callable[[], None]] = []

_PR_SET_PDEATHSIG = 1
# The server checks the size of a call before it hands it to a worker.
MAX_CALL_SIZE = 2**32 - 1


def _die_with_parent(parent_pid: int) -> None:
    # A worker must not outlive a server that was SIGKILLed: it would hold
    # tasks nobody can collect and keep client connections open.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the server died before prctl took effect
        os._exit(1)


def worker_main(sock: socket.socket, close_fds: Iterable[int], parent_pid: int, fresh: bool,
                max_message_size: int = MAX_CALL_SIZE, measure_memory: bool = False) -> None:
    """Body of a worker process; never returns.  An outcome is encoded within
    ``max_message_size`` bytes (the server's limit).  ``measure_memory``: say
    in each ``Done`` how much memory the worker holds after the task."""
    code = 0
    try:
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        _die_with_parent(parent_pid)
        sock.setblocking(True)
        reader = FrameReader(max_body=MAX_CALL_SIZE)
        receiving = RecvBuffer()
        while True:
            data = receiving.recv(sock)
            if not data:
                break
            for header, body in reader.feed(data):
                message = decode(header, (Run, Exit))
                if isinstance(message, Exit):
                    return
                task_id = message.task_id
                context.CURRENT_TASK_ID = task_id
                with reporting(_progress_sender(sock, task_id)):
                    outcome = _run(task_id, body)
                context.CURRENT_TASK_ID = None
                pieces, failed = encode_outcome(outcome, min(max_message_size, MAX_CALL_SIZE))
                del outcome  # a big result is not kept twice while it is sent
                rss = _memory_after_task(pieces) if measure_memory and not fresh else None
                sendall_pieces(sock, Done(task_id, failed, rss).encode(pieces))
                if fresh:
                    return
    except BaseException:  # a worker must never return into the server's code
        with contextlib.suppress(Exception):
            logger.exception('worker %d failed', os.getpid())
        code = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _memory_after_task(pieces: list) -> int | None:
    # The encoded outcome is freed once sent: what stays is what the task
    # left behind (a module-level cache, a leak), which is what is limited.
    rss = resident_bytes()
    return None if rss is None else max(0, rss - sum(map(len, pieces)))


def _progress_sender(sock: socket.socket, task_id: str) -> Callable[[Progress], None]:
    # Called by the reporter with its lock held, from the task's threads or its
    # timer, never once the task has ended: the Done that follows is not mixed in.
    def send(report: Progress) -> None:
        sendall_pieces(sock, ProgressReport(task_id, *report).encode())
    return send


def _run(task_id: str, call: bytes) -> Outcome:
    try:
        cmd, args, kwargs = loads_call(call)
    except Exception as exc:
        error = ColdocTasksSerializationError(f'the worker cannot unpickle the call of task {task_id}: {exc!r}')
        return Outcome(exception=error, traceback=traceback.format_exception(type(exc), exc, exc.__traceback__))
    for hook in BEFORE_TASK_HOOKS:
        try:
            hook(task_id)
        except Exception as exc:
            error = ColdocTasksException(f'the before-task hook {describe_callable(hook)} failed: {exc!r}')
            return Outcome(exception=error, traceback=traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        return call_capturing(cmd, args, kwargs)
    finally:
        for hook in AFTER_TASK_HOOKS:
            try:
                hook(task_id)
            except Exception:
                logger.exception('the after-task hook %s failed', describe_callable(hook))
