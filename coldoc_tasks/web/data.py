"""What the status page shows, gathered from the task server of an
infofile: :func:`snapshot` (the JSON of ``/api/status``) and
:func:`terminate` (the page's one action).

The shape of a snapshot::

    {"available": true,            # the server answered
     "error": null,                # else: why it did not
     "time": 1700000000.0,         # when this was gathered (seconds since the epoch)
     "infofile": "/path/to/infofile",
     "server": {...}}              # its status, as `coldoc status --json` prints it (null when unavailable)

The server's status carries no task's arguments (the server holds calls
as pickles it never reads), and never its key.

The page asks once a second: so one connection to the server is kept and
shared (made again when the server restarts), rather than one per request.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..coldoc.client import get_connection
from ..coldoc.fork import server_address
from ..coldoc.infofile import InfofileError, PathLike
from ..coldoc.messages import Status, Terminate
from ..exceptions import ColdocTasksConnectionError, ColdocTasksTimeoutError

__all__ = ['snapshot', 'terminate', 'UNAVAILABLE', 'valid_task_id']

#: The errors of a server that is not there or does not answer: the page
#: says so, and asks again.
UNAVAILABLE = (InfofileError, ColdocTasksConnectionError, ColdocTasksTimeoutError, OSError)


def _request(infofile: PathLike, kind: type, *fields: Any, timeout: float) -> Any:
    connection = get_connection(*server_address(infofile, None, None))
    return connection.request(kind, *fields, timeout=timeout)[0].value


def snapshot(infofile: PathLike, timeout: float = 5.0) -> dict[str, Any]:
    """The status page's data (see the module's docstring); never raises
    for a server that does not answer: ``available`` is then false."""
    infofile = os.fspath(infofile)
    try:
        server, error = _request(infofile, Status, timeout=timeout), None
    except UNAVAILABLE as exc:
        server, error = None, str(exc) or type(exc).__name__
    return {'available': server is not None, 'error': error, 'time': time.time(), 'infofile': infofile,
            'server': server}


def valid_task_id(task_id: Any) -> bool:
    """Whether ``task_id`` may be a task's id (what a request may name)."""
    return (isinstance(task_id, str) and 0 < len(task_id) <= 200
            and all(c.isascii() and (c.isalnum() or c in '-_.:') for c in task_id))


def terminate(infofile: PathLike, task_id: str, timeout: float = 5.0) -> str:
    """Terminate the task ``task_id`` (cancel it if it is queued); return
    its state after the request.  Raises one of :data:`UNAVAILABLE`, or
    :class:`~coldoc_tasks.exceptions.ColdocTasksUnknownTaskError` for a
    task the server does not know."""
    return _request(infofile, Terminate, task_id, timeout=timeout)
