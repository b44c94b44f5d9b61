"""The exceptions raised by coldoc_tasks.

Everything the package raises on its own account derives from
:class:`ColdocTasksException`, so ``except ColdocTasksException`` catches all
of it.  Where a built-in exception has the same meaning, it is mixed in, so
code that already catches ``TimeoutError`` or ``ProcessLookupError`` keeps
working.

Exceptions raised by a task itself are not wrapped: ``wait()`` re-raises them
with their own type and arguments.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

__all__ = [
    'ColdocTasksException',
    'ColdocTasksUsageError',
    'ColdocTasksNotSupportedError',
    'ColdocTasksTimeoutError',
    'ColdocTasksProcessLookupError',
    'ColdocTasksSerializationError',
    'ColdocTasksMessageSizeError',
    'ColdocTasksRemoteError',
    'ColdocTasksRemoteTraceback',
    'ColdocTasksUnknownTaskError',
    'ColdocTasksConnectionError',
    'ColdocTasksJournalError',
    'ColdocTasksAuthenticationError',
    'ColdocTasksProtocolError',
    'ColdocTasksBackendUnavailableError',
    'ColdocTasksOptionError',
    'ColdocTasksSettingsError',
    'ColdocTasksStartError',
    'ColdocTasksServerRunningError',
    'ColdocTasksLegacyServerRunningError',
    'ColdocTasksStopPermissionError',
    'ServerGoneError',
    'InfofileError',
    'InfofileMissingError',
    'LegacyInfofileError',
    'UnsafePathError',
    'SelfCheckError',
    'SelfCheckFailure',
]


class ColdocTasksException(Exception):
    """Root of every exception that coldoc_tasks raises on its own account."""


class ColdocTasksUsageError(ColdocTasksException, RuntimeError):
    """A fork object was used out of order: ``wait`` before ``run``, ``run``
    twice, or waiting for a task from a process that cannot reach it."""


class ColdocTasksNotSupportedError(ColdocTasksException, NotImplementedError):
    """The backend cannot do what was asked (``terminate`` on ``nofork``)."""


class ColdocTasksTimeoutError(ColdocTasksException, TimeoutError):
    """``wait`` gave up after its timeout; the task is still running and
    ``wait`` may be called again."""


class ColdocTasksProcessLookupError(ColdocTasksException, ProcessLookupError):
    """The process running the task vanished before it produced a result:
    killed by a signal, crashed, exited early, terminated, or its server went
    away.  The message names what happened."""


class ColdocTasksSerializationError(ColdocTasksException, pickle.PicklingError):
    """An argument, a result or a message could not be pickled or unpickled.
    The message names the type that failed."""


class ColdocTasksMessageSizeError(ColdocTasksSerializationError):
    """A call or a result is larger than the coldoc server accepts in one
    message (its ``max_message_size``).  The message names both sizes.  A
    result over the limit is refused in the worker, before it is sent, and
    the waiter gets this error instead."""


class ColdocTasksRemoteError(ColdocTasksException):
    """Stands in for an exception raised by a task that could not be handed
    back as itself: it could not be pickled, or not rebuilt from its pickle,
    or not unpickled where ``wait`` was called (its class cannot be imported
    there), or its pickle was over the server's message size limit.

    ``type_name`` is the dotted name of the original class, ``message`` its
    ``str()``, ``remote_traceback`` the traceback text where it was raised
    (both shortened if they were over the size limit), ``reason`` why the
    original could not come.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = '', reason: str = ''):
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        self.reason = reason

    def __str__(self) -> str:
        return f'{self.type_name}: {self.message}'


class ColdocTasksRemoteTraceback(Exception):
    """Carries the traceback text of a task's exception; it is attached as the
    ``__cause__`` of the re-raised exception, so a printed traceback shows
    where the task failed as well as where ``wait`` was called."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return '\n\n"""\n' + self.text.rstrip('\n') + '\n"""'


class ColdocTasksUnknownTaskError(ColdocTasksException, LookupError):
    """The server does not know the task: its result was already collected,
    expired, or the id was never issued."""


class ColdocTasksConnectionError(ColdocTasksException, ConnectionError):
    """The task server could not be reached, or the connection to it broke."""


class ColdocTasksAuthenticationError(ColdocTasksConnectionError):
    """The task server refused the authentication key."""


class ColdocTasksProtocolError(ColdocTasksConnectionError):
    """A peer sent something that is not a valid message of the protocol."""


class ColdocTasksBackendUnavailableError(ColdocTasksException):
    """No backend of the requested kind is available (not installed, not
    configured, or its server does not answer)."""


class InfofileError(ColdocTasksException):
    """The infofile is missing, unreadable, or not an infofile."""


class InfofileMissingError(InfofileError):
    """No infofile exists at that path."""


class LegacyInfofileError(InfofileError):
    """The infofile ``path`` is one of coldoc_tasks 0.2 (``info`` holds what it says)."""

    def __init__(self, message: str, info: dict[str, Any], path: str):
        super().__init__(message)
        self.info = info
        self.path = path

    def __reduce__(self):
        return type(self), (self.args[0], self.info, self.path)


class UnsafePathError(ColdocTasksException):
    """Something that is not ours is at a path the server would write or
    remove (a link, a directory, another user's file, a live socket): the
    server refuses it rather than touch it."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f'{os.fspath(path)}: {reason}; refusing to use it')
        self.path = os.fspath(path)
        self.reason = reason

    def __reduce__(self):
        return type(self), (self.path, self.reason)


class ColdocTasksOptionError(ColdocTasksException, ValueError):
    """A server option has a value outside its range, or is unknown; the
    message names the option and what it accepts."""


class ColdocTasksJournalError(ColdocTasksException):
    """The server's journal cannot be used: it is not a journal, it is of
    another format, it is corrupt, or another server holds it.  The message
    names the file and the problem; the file is left untouched."""


class ColdocTasksStartError(ColdocTasksException):
    """A task server could not be started; the message holds its own output."""


class ColdocTasksServerRunningError(ColdocTasksException):
    """A live server already holds this infofile."""

    def __init__(self, infofile: str, pid: int | None):
        super().__init__(f'a coldoc task server is already running (pid {pid}) for {infofile}')
        self.infofile = infofile
        self.pid = pid

    def __reduce__(self):
        return type(self), (self.infofile, self.pid)


class ColdocTasksLegacyServerRunningError(ColdocTasksServerRunningError):
    """A server of coldoc_tasks 0.2 still serves this infofile."""

    def __init__(self, infofile: str, pid: int):
        ColdocTasksException.__init__(
            self, f'an old coldoc_tasks 0.2 server (pid {pid}) still serves {infofile}; stop it first '
            f'(coldoc_tasks_cli coldoc stop {infofile}, or kill {pid}), then start this one')
        self.infofile = infofile
        self.pid = pid


class ServerGoneError(ColdocTasksConnectionError):
    """The connection to the task server broke (the server stopped or died)."""


class ColdocTasksStopPermissionError(ColdocTasksException, PermissionError):
    """This user may not stop that server (it belongs to another user)."""


class ColdocTasksSettingsError(ColdocTasksException):
    """A ``COLDOC_TASKS_*`` setting has a value that cannot be used."""


class SelfCheckError(Exception):
    """Raised on purpose by a task of the self-check (:mod:`coldoc_tasks.selfcheck`),
    to see it come back; not an error of the package."""


class SelfCheckFailure(ColdocTasksException):
    """A check of the self-check (:mod:`coldoc_tasks.selfcheck`) found the
    backend breaking the contract; the message says what it saw."""
