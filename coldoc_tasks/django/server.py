"""A coldoc server for a Django site: ``python -m coldoc_tasks.django.server
start INFOFILE ...`` sets Django up once, then runs the ordinary server
(same arguments as ``python -m coldoc_tasks.coldoc.cli``).

Workers never share a database connection: the server closes its
connections before forking a worker, and a worker closes its own before and
after every task (see :func:`install_database_hooks`).
"""

from __future__ import annotations

import os
import sys

from ..coldoc import cli as coldoc_cli
from ..coldoc.context import IN_SERVER_ENV
from ..coldoc.server import worker_process
from ..exceptions import ColdocTasksSettingsError
from .settings import AUTOSTART_ENV, AUTOSTART_OPTIONS_ENV

__all__ = ['install_database_hooks', 'setup_django_server', 'server_main']


def _close_connections(*_: object) -> None:
    from django.db import connections

    connections.close_all()


def install_database_hooks() -> None:
    """Make a coldoc server in this process safe for the ORM: connections
    are closed before a worker is forked, and in a worker before and after
    each task, so that no two processes ever share one."""
    for hooks in (worker_process.BEFORE_FORK_HOOKS, worker_process.BEFORE_TASK_HOOKS,
                  worker_process.AFTER_TASK_HOOKS):
        if _close_connections not in hooks:
            hooks.append(_close_connections)


def setup_django_server() -> None:
    """Prepare this process to be a site's coldoc server: mark it as a server
    (so that the app never autostarts here), ``django.setup()`` once, and the
    database hooks."""
    import django
    from django.apps import apps

    os.environ.setdefault(IN_SERVER_ENV, str(os.getpid()))
    os.environ.pop(AUTOSTART_OPTIONS_ENV, None)
    os.environ.pop(AUTOSTART_ENV, None)
    if not apps.ready:
        if not os.environ.get('DJANGO_SETTINGS_MODULE'):
            raise ColdocTasksSettingsError('DJANGO_SETTINGS_MODULE is not set')
        django.setup()
    _close_connections()
    install_database_hooks()


def server_main(argv: list[str] | None = None) -> int:
    """``python -m coldoc_tasks.django.cli start ...``: set Django up once,
    then run the coldoc server command (same arguments as
    ``python -m coldoc_tasks.coldoc.cli``)."""
    try:
        setup_django_server()
    except Exception as exc:  # reported through the starting process's stderr
        print(f'coldoc_tasks: cannot set up Django for the task server: {exc!r}', file=sys.stderr)
        return 1
    return coldoc_cli.main(argv)


if __name__ == '__main__':
    sys.exit(server_main(sys.argv[1:]))
