"""Control a Django site's coldoc task server, with everything read from the
site's settings.

Two command lines share the code here::

    manage.py coldoc_tasks start|daemon|stop|status|ping|pid|test [...]
    coldoc_tasks_cli coldoc django_start|django_daemon|...|django_test --settings mysite.settings [...]

``start`` and ``daemon`` take the main options of ``coldoc_tasks_cli coldoc
start`` (``--concurrency 2``, ``--queue pdf:1:fresh``, ``--verbose`` ...).

A server for a site is run as ``python -m coldoc_tasks.django.server start
...`` (see :mod:`coldoc_tasks.django.server`).

Django is imported only when a command runs: ``coldoc_tasks_cli`` imports
this module to add the commands even where Django is not installed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from .. import task_utils
from ..coldoc import cli as coldoc_cli
from ..coldoc import options as options_table
from ..coldoc.daemon import AUTHKEY_ENV, server_command
from ..coldoc.fork import bind_fork_class
from ..coldoc.options import argument_type
from ..exceptions import ColdocTasksSettingsError, ColdocTasksStartError
from .autostart import autostart_coldoc, start_coldoc_daemon
from .forks import preferences
from .server import setup_django_server
from .settings import AUTOSTART_OPTIONS_ENV, read_settings

#: command -> help
COMMANDS = {
    'start': 'run the task server in the foreground',
    'daemon': 'start the task server in the background, return once it serves',
    'autostart': 'start the task server in the background unless one answers',
    'stop': 'stop the task server',
    'status': "show the settings and the task server's state",
    'ping': 'check that the task server answers',
    'pid': "print the task server's pid",
    'test': 'run a self-check against the live task server, Django included',
}

#: Other names of commands: coldoc_tasks 0.2's ``shutdown``.
ALIASES = {'shutdown': 'stop'}

#: The options of "coldoc_tasks_cli coldoc start" that start and daemon pass on:
#: (flag, type, help); a ServerOption type is checked against its range here.
SERVER_OPTIONS: list[tuple[str, Any, str]] = [
    ('--concurrency', int, 'tasks run at once on the default queue (default: CPUs)'),
    ('--mode', str, 'default queue: reuse workers, or a fresh process per task (reuse, fresh)'),
    ('--max-tasks-per-worker', int, 'default queue: recycle a worker after N tasks'),
    ('--queue', list, 'configure a named queue (repeatable), NAME[:CONCURRENCY[:MODE[:MAX_TASKS]]]'),
    *[(option.flag, option, option.help) for option in options_table.SERVER_OPTIONS],
    ('--preload', list, 'import this module in the server once, before forking workers (repeatable)'),
    ('--verbose', bool, 'log every task'),
]


def add_command_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the options of ``command`` to its ``parser``."""
    if command in ('stop', 'status', 'ping', 'test', 'daemon', 'autostart'):
        parser.add_argument('--timeout', type=float, default=None,
                            help='seconds to wait for an answer (default: depends on the command)')
    if command == 'stop':
        parser.add_argument('--grace', type=float, help='seconds running tasks get to finish')
    if command == 'status':
        parser.add_argument('--json', action='store_true', help='machine-readable output')
    if command in ('start', 'daemon'):
        for flag, kind, text in SERVER_OPTIONS:
            if kind is bool:
                parser.add_argument(flag, action='store_true', help=text)
            elif kind is list:
                parser.add_argument(flag, action='append', help=text)
            elif isinstance(kind, options_table.ServerOption):
                parser.add_argument(flag, type=argument_type(kind), help=text)
            else:
                parser.add_argument(flag, type=kind, help=text)


def server_args(options: dict[str, Any]) -> list[str]:
    """The server options given to ``start`` or ``daemon``, as a command line."""
    argv: list[str] = []
    for flag, kind, _ in SERVER_OPTIONS:
        value = options.get(flag.lstrip('-').replace('-', '_'))
        if value is None or value is False:
            continue
        if kind is bool:
            argv.append(flag)
        elif kind is list:
            for item in value:
                argv += [flag, item]
        else:
            argv += [flag, str(value)]
    return argv


def run(command: str, options: dict[str, Any]) -> int:
    """Run ``command`` for the site whose Django settings are loaded; return
    the exit status."""

    try:
        conf = read_settings()
    except ColdocTasksSettingsError as exc:
        print(f'coldoc_tasks: {exc}', file=sys.stderr)
        return 2
    if options.get('infofile'):  # django_start_with INFOFILE
        conf = dataclasses.replace(conf, infofile=os.path.abspath(options['infofile']), default_infofile=False)
    timeout = options.get('timeout')
    timeout_args = [] if timeout is None else ['--timeout', str(timeout)]
    extra = server_args(options)
    if command == 'start':
        setup_django_server()
        if conf.password:
            os.environ[AUTHKEY_ENV] = conf.password.hex()  # never on the command line
        # the settings' queues and options, then those of the command line (the last word wins)
        argv = server_command(conf.infofile, conf.socket, logfile=conf.coldoc_logfile, queues=conf.queues,
                              options=conf.server_options)[3:]
        return coldoc_cli.main(argv + extra)
    if command == 'autostart':
        try:
            pid = autostart_coldoc(conf, timeout=30.0 if timeout is None else timeout)
        except ColdocTasksStartError as exc:
            print(f'coldoc_tasks: {exc}', file=sys.stderr)
            return 1
        print(f'coldoc task server running (pid {pid})')
        return 0
    if command == 'daemon':
        try:
            pid = start_coldoc_daemon(conf, extra_args=extra,
                                                     timeout=30.0 if timeout is None else timeout)
        except ColdocTasksStartError as exc:
            print(f'coldoc_tasks: {exc}', file=sys.stderr)
            return 1
        print(f'coldoc task server started (pid {pid})')
        return 0
    if command == 'status' and not options.get('json'):
        print(_settings_summary(conf))
        print()
    argv = [command, conf.infofile, *timeout_args]
    if command == 'stop' and options.get('grace') is not None:
        argv += ['--grace', str(options['grace'])]
    if command == 'status' and options.get('json'):
        argv.append('--json')
    status = coldoc_cli.main(argv)
    if command == 'test' and status == 0:
        status = _test_django(conf, 30.0 if timeout is None else timeout)
    return status


def _settings_summary(conf: Any) -> str:
    # what a web process would choose now, without the log lines of a choice
    chooser_log = task_utils.logger
    quiet, chooser_log.disabled = chooser_log.disabled, True
    try:
        backend_now = task_utils.BestForkClass(conf.infofile, conf.celeryconfig, preferences(conf)).fork_type
    finally:
        chooser_log.disabled = quiet
    lines = [f'settings module   {conf.settings_module}',
             f'infofile          {conf.infofile}{" (default)" if conf.default_infofile else ""}',
             f'socket            {conf.socket or "(temporary)"}',
             f'password          {"set" if conf.password else "(random)"}',
             f'celeryconfig      {conf.celeryconfig or "-"}',
             f'autostart         {",".join(conf.autostart) or "-"} '
             f'(${AUTOSTART_OPTIONS_ENV}={os.environ.get(AUTOSTART_OPTIONS_ENV, "")!r} here)',
             f'logfile           {conf.logfile or "-"}',
             f'pythonpath        {os.pathsep.join(conf.pythonpath) or "-"}',
             f'backend now       {backend_now}']
    return '\n'.join(lines)


def django_probe() -> dict[str, Any]:
    """A task: what a worker knows of Django (is it set up, which settings,
    can it reach the database)."""
    from django.apps import apps
    from django.conf import settings
    from django.db import connection

    connection.ensure_connection()
    return {'pid': os.getpid(), 'apps_ready': apps.ready, 'settings_module': settings.SETTINGS_MODULE,
            'database': connection.vendor}


def _test_django(conf: Any, timeout: float) -> int:
    f = bind_fork_class(conf.infofile)()
    try:
        f.run(django_probe)
        answer = f.wait(timeout=timeout)
    except Exception as exc:  # any failure of the probe is the report
        print(f'FAIL django: the probe task failed: {exc!r}')
        return 1
    if not answer['apps_ready'] or answer['settings_module'] != conf.settings_module:
        print(f'FAIL django: the worker is not set up for {conf.settings_module}: {answer}')
        return 1
    print(f'ok   django: worker {answer["pid"]} has {answer["settings_module"]} set up, '
          f'database {answer["database"]} reachable')
    return 0


# -- coldoc_tasks_cli coldoc django_* -------------------------------------------------


def _setup_django(settings_module: str | None, pythonpath: list[str] | None) -> None:
    import django

    for path in reversed(pythonpath or ()):
        sys.path.insert(0, os.path.abspath(path))
    if settings_module:
        os.environ['DJANGO_SETTINGS_MODULE'] = settings_module
    if not os.environ.get('DJANGO_SETTINGS_MODULE'):
        raise SystemExit('coldoc_tasks_cli: give --settings or set DJANGO_SETTINGS_MODULE')
    django.setup()


def _cli_handler(command: str):
    def handler(args: argparse.Namespace) -> int:
        if command == 'start':
            # a foreground server: mark it before the app is ready, so it never autostarts
            os.environ.pop(AUTOSTART_OPTIONS_ENV, None)
        _setup_django(args.settings, args.pythonpath)
        return run(command, vars(args))
    return handler


def add_django_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``django_start`` ... ``django_test`` to the ``coldoc`` command group."""
    for command, text in COMMANDS.items():
        aliases = [f'django_{alias}' for alias, target in ALIASES.items() if target == command]
        parser = commands.add_parser(f'django_{command}', help=f'{text} (Django site, from its settings)',
                                     aliases=aliases)
        parser.add_argument('--settings', help='the Django settings module (default: $DJANGO_SETTINGS_MODULE)')
        parser.add_argument('--pythonpath', action='append',
                            help='a directory to add to the Python path (repeatable), e.g. the site')
        add_command_arguments(parser, command)
        parser.set_defaults(handler=_cli_handler(command))
    # coldoc_tasks 0.2's way of running a site's server for a given infofile
    parser = commands.add_parser('django_start_with', help='run the task server of a Django site in the foreground '
                                 'for this infofile')
    parser.add_argument('infofile')
    parser.add_argument('--settings', help='the Django settings module (default: $DJANGO_SETTINGS_MODULE)')
    parser.add_argument('--pythonpath', action='append', help='a directory to add to the Python path (repeatable)')
    add_command_arguments(parser, 'start')
    parser.set_defaults(handler=_cli_handler('start'))

