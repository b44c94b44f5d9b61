"""The ``coldoc`` backend under the name the seed and coldoc_tasks 0.2 use:
every public name of :mod:`coldoc_tasks.coldoc` (the fork class, control,
starting, 0.2's calls), and the exceptions, as 0.2 had them here.  Pickles
made by earlier versions name :func:`_rebuild` and :func:`bind_fork_class`
here, so they stay."""

from .coldoc.compat import (  # noqa: F401
    AUTOSTART_OPTIONS_ENV,
    task_server_check,
    tasks_daemon_autostart,
    tasks_server_readinfo,
    temporary_logfile,
)
from .coldoc.control import get_infofile, ping, server_pid, shutdown, status, test  # noqa: F401
from .coldoc.daemon import ensure_server, tasks_daemon_start  # noqa: F401
from .coldoc.fork import ColdocFork, _rebuild, bind_fork_class, fork_class, get_fork_class  # noqa: F401
from .coldoc.queues import QueueConfig  # noqa: F401
from .django.autostart import tasks_daemon_django_autostart  # noqa: F401
from .exceptions import *  # noqa: F401,F403
from .exceptions import __all__ as _exceptions

__all__ = [  # noqa: F405 - two of them come from __getattr__ below
    'ColdocFork', 'fork_class', 'get_fork_class', 'bind_fork_class', 'ping', 'status', 'shutdown', 'server_pid',
    'test', 'get_infofile', 'tasks_server_start', 'tasks_daemon_start', 'tasks_daemon_autostart',
    'tasks_daemon_django_autostart', 'tasks_server_readinfo', 'task_server_check', 'QueueConfig',
    'AUTOSTART_OPTIONS_ENV', *_exceptions,
]


def __getattr__(name: str):
    # The server itself is loaded only by who runs one in this process: a
    # client importing this module does not pay for the server's modules.
    if name in ('run_server', 'tasks_server_start'):
        from .coldoc.server import main

        return getattr(main, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
