"""A wait across a restart of a server with a journal: the part of
:class:`~.fork.ColdocFork` that finds the server again and asks it for the
outcome.

A server with a journal says so (its id) when a client connects.  When the
connection to it breaks while a ``wait`` runs, the wait does not give up: it
tries the infofile again (the restarted server may have a new socket or
key), for at most :attr:`Reconnecting.reconnect_timeout` seconds, and once a
server on the same journal answers:

- the process that submitted the task sends its ``Submit`` again, with the
  call it kept: a task the stopped server had recorded is not run again (the
  server makes this client its subscriber and pushes the outcome when there
  is one); a task it had not recorded never ran, and runs now;
- any other process (a copy of the fork object) sends its ``Wait`` again.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

from ..exceptions import (
    ColdocTasksConnectionError,
    ColdocTasksProcessLookupError,
    ColdocTasksTimeoutError,
)
from ..outcome import Outcome
from . import context
from .client import PushSlot, ServerConnection
from .infofile import InfofileError
from .messages import Submit, Wait

__all__ = ['Reconnecting']


class Reconnecting:
    """Waiting across a restart of a server with a journal (a mixin of
    :class:`~.fork.ColdocFork`, whose methods it uses)."""

    #: Seconds a ``wait`` keeps trying to reach a server with a journal that
    #: went away (one is expected back on the same infofile and journal).
    reconnect_timeout: ClassVar[float] = 60.0
    _retry_on_loss = 0
    #: the id of the journal of the server the task went to, if it has one
    _journal_id: str | None = None
    #: the pickled call, kept by the process that submitted the task to a
    #: server with a journal until the outcome is here: sent again if that
    #: server stops before it has recorded the task
    _call: bytes | None = None
    _push: PushSlot | None = None
    task_id: str | None
    queue: str
    cmd_name: str | None

    def _collect_again(self, timeout: float | None, deadline: float | None) -> Outcome:
        """The server, which has a journal, went away while this waited:
        wait (at most :attr:`reconnect_timeout`) for a server on the same
        journal to answer on the infofile, then ask it for the outcome; the
        process that submitted the task sends its Submit again, which runs it
        only if the stopped server had not recorded it."""
        journal_id = self._journal_id
        give_up = time.monotonic() + self.reconnect_timeout
        pause = 0.02
        why = 'it did not answer'
        while True:
            try:
                connection = self._connection()
            except (ColdocTasksConnectionError, InfofileError) as exc:
                why = str(exc)
            else:
                if connection.journal_id != journal_id:
                    return Outcome(exception=ColdocTasksProcessLookupError(
                        f'task {self.task_id}: the task server went away while waiting, and the one that answers '
                        f'now does not have its journal'))
                outcome = self._ask_again(connection, timeout, deadline)
                if outcome is not None:
                    return outcome
                why = 'the connection broke again'
            now = time.monotonic()
            if now >= give_up:
                return Outcome(exception=ColdocTasksProcessLookupError(
                    f'task {self.task_id}: the task server went away while waiting, and no server on its journal '
                    f'answered within {self.reconnect_timeout:g} s ({why})'))
            if deadline is not None and now >= deadline:
                raise self._timeout_error(timeout)
            time.sleep(min(pause, give_up - now, *(() if deadline is None else (deadline - now,))))
            pause = min(pause * 2, 0.5)

    def _ask_again(self, connection: ServerConnection, timeout: float | None,
                   deadline: float | None) -> Outcome | None:
        """The outcome, from a server back on the journal; None if the
        connection broke meanwhile."""
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        call = self._call
        if call is not None and self._push is not None and self._push.pid == os.getpid():
            slot = self._push = connection.push_slots[self.task_id] = PushSlot()
            self._follow_progress(connection, self.task_id)
            try:
                connection.send(Submit(self.task_id, self.queue, self.cmd_name, True, self._retry_on_loss,
                                       self.priority, self.run_after, 0), call)
            except ColdocTasksConnectionError:
                return None
            if not slot.latch.acquire(timeout=-1 if remaining is None else remaining):
                raise self._timeout_error(timeout)
            slot.latch.release()
            return None if slot.message is None else self._decode(slot.message, slot.body)
        self._follow_progress(connection, self.task_id)
        try:
            message, body = connection.request(Wait, self.task_id, context.CURRENT_TASK_ID,
                                               timeout=remaining, unwait_on_timeout=True)
        except ColdocTasksTimeoutError:
            raise self._timeout_error(timeout) from None
        except ColdocTasksConnectionError:
            return None
        return self._decode(message, body)
