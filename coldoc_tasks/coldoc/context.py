"""What a process knows of its place around a coldoc server: whether it is
a server (or one of its workers), and which task it runs."""

from __future__ import annotations

#: Set in the environment of a server process and so of its workers: code
#: that would autostart a server must not do so from inside one.
IN_SERVER_ENV = 'COLDOC_TASKS_IN_SERVER'

#: The id of the task this process is running, if it is a worker; a client in
#: this process sends it along with ``wait`` so that the server can lend the
#: blocked worker's slot to its queue.  A process the task forks keeps it: a
#: wait there blocks the task too (if the task waits for that process), and
#: lending is what keeps such a chain from deadlocking.
CURRENT_TASK_ID: str | None = None
