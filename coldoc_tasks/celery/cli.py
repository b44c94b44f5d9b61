"""``coldoc_tasks_cli celery ...``: control Celery workers for coldoc_tasks.

::

    coldoc_tasks_cli celery start CELERYCONFIG           a worker in the foreground
    coldoc_tasks_cli celery daemon CELERYCONFIG [LOGFILE]  a worker in the background; returns once it answers
    coldoc_tasks_cli celery stop [CELERYCONFIG]          ask every worker to shut down
    coldoc_tasks_cli celery status [CELERYCONFIG] [--json]
    coldoc_tasks_cli celery ping [CELERYCONFIG]
    coldoc_tasks_cli celery test [CELERYCONFIG]          run a trivial task and report its round trip

Where CELERYCONFIG is optional, the environment variable
``COLDOC_TASKS_CELERYCONFIG`` is used.  Celery itself is imported only when a
command runs, so the rest of the command line works without it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..exceptions import ColdocTasksException

ENV_CELERYCONFIG = 'COLDOC_TASKS_CELERYCONFIG'


def add_subcommands(subparsers: Any) -> None:
    """Add the ``celery`` command group to the ``coldoc_tasks_cli`` parser."""
    parser = subparsers.add_parser('celery', help='control Celery workers',
                                   description='Control the Celery workers that run coldoc_tasks tasks.')
    group = parser.add_subparsers(dest='celery_command', metavar='COMMAND')
    parser.set_defaults(handler=_needs_command(parser))

    p = group.add_parser('start', help='run a worker in the foreground')
    p.add_argument('celeryconfig', metavar='CELERYCONFIG', help='path of the celeryconfig.py file')
    _worker_options(p)
    p.add_argument('--logfile', help="the worker's log file (default: standard error)")
    p.set_defaults(handler=_start)

    p = group.add_parser('daemon', help='start a worker in the background; return once it answers a ping')
    p.add_argument('celeryconfig', metavar='CELERYCONFIG', help='path of the celeryconfig.py file')
    p.add_argument('logfile', metavar='LOGFILE', nargs='?', help="the worker's log file (default: none)")
    _worker_options(p)
    p.add_argument('--timeout', type=float, default=60.0, help='seconds to wait for the worker (default: 60)')
    p.set_defaults(handler=_daemon)

    for name, help_text, handler in (
            ('stop', 'ask every worker to shut down (running tasks finish first)', _stop),
            ('status', 'list workers with their active, reserved and registered tasks', _status),
            ('ping', 'list the workers that answer a ping; exit 1 if none does', _ping),
            ('test', 'run a trivial task on the workers and report its round-trip time', _test)):
        p = group.add_parser(name, help=help_text)
        p.add_argument('celeryconfig', metavar='CELERYCONFIG', nargs='?',
                       help=f'path of the celeryconfig.py file (default: ${ENV_CELERYCONFIG})')
        p.add_argument('--timeout', type=float, default=None, help='seconds to wait for answers')
        if name == 'status':
            p.add_argument('--json', action='store_true', help='print JSON')
        p.set_defaults(handler=handler, parser=p)


def _worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument('--concurrency', type=int, help='pool processes (default: the number of CPUs)')
    p.add_argument('--queue', action='append', dest='queues', metavar='QUEUE',
                   help='a queue to consume from (repeatable; default: the default queue)')
    p.add_argument('--hostname', help='the node name of the worker (default: coldoc_tasks.PID@HOST)')
    p.add_argument('--loglevel', default='INFO', help='log level (default: INFO)')


def _needs_command(parser: argparse.ArgumentParser):
    def handler(args: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        print(f'{parser.prog}: error: a command is needed', file=sys.stderr)
        return 2
    return handler


def _celeryconfig(args: argparse.Namespace) -> str:
    path = args.celeryconfig or os.environ.get(ENV_CELERYCONFIG)
    if not path:
        args.parser.error(f'CELERYCONFIG is needed (or set the environment variable {ENV_CELERYCONFIG})')
    return path


def _fail(exc: Exception) -> int:
    print(f'error: {exc}', file=sys.stderr)
    return 1


def _start(args: argparse.Namespace) -> int:
    from . import daemon as celery_daemon

    try:
        celery_daemon.start(args.celeryconfig, concurrency=args.concurrency, queues=args.queues,
                           hostname=args.hostname, loglevel=args.loglevel, logfile=args.logfile)
    except ColdocTasksException as exc:
        return _fail(exc)
    return 0


def _daemon(args: argparse.Namespace) -> int:
    from . import daemon as celery_daemon

    try:
        pid = celery_daemon.daemon(args.celeryconfig, args.logfile, timeout=args.timeout, concurrency=args.concurrency,
                                  queues=args.queues, hostname=args.hostname, loglevel=args.loglevel)
    except ColdocTasksException as exc:
        return _fail(exc)
    print(f'Celery worker started, pid {pid}')
    return 0


def _timeout(args: argparse.Namespace, default: float) -> float:
    return default if args.timeout is None else args.timeout


def _stop(args: argparse.Namespace) -> int:
    from . import control as celery_control

    try:
        stopped = celery_control.stop(_celeryconfig(args), timeout=_timeout(args, 10.0))
    except ColdocTasksException as exc:
        return _fail(exc)
    if not stopped:
        print('no Celery worker answered')
    for name, pid in stopped.items():
        print(f'{name} (pid {pid}) told to stop')
    return 0


def _status(args: argparse.Namespace) -> int:
    from . import control as celery_control

    try:
        workers = celery_control.status(_celeryconfig(args), timeout=_timeout(args, 1.0))
    except ColdocTasksException as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({'workers': workers}, indent=2, sort_keys=True))
        return 0 if workers else 1
    if not workers:
        print('no Celery worker answered')
        return 1
    for name, info in workers.items():
        print(f'{name}: pid {info["pid"]}, concurrency {info["concurrency"]}, '
              f'{len(info["active"])} active, {len(info["reserved"])} reserved')
        for kind in ('active', 'reserved'):
            for task in info[kind]:
                print(f'  {kind:8} {task["id"]} {task["name"]}')
        print(f'  registered: {", ".join(info["registered"])}')
    return 0


def _ping(args: argparse.Namespace) -> int:
    from . import control as celery_control

    try:
        names = celery_control.ping(_celeryconfig(args), timeout=_timeout(args, 1.0))
    except ColdocTasksException as exc:
        return _fail(exc)
    if not names:
        print('no Celery worker answered')
        return 1
    for name in names:
        print(f'{name}: pong')
    return 0


def _test(args: argparse.Namespace) -> int:
    from . import check as celery_check

    try:
        elapsed = celery_check.test(_celeryconfig(args), timeout=_timeout(args, 30.0))
    except ColdocTasksException as exc:
        return _fail(exc)
    print(f'ok: a task made the round trip in {elapsed * 1000:.1f} ms')
    return 0
