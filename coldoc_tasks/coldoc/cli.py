"""``coldoc_tasks_cli coldoc ...``: control a coldoc task server.

Also runnable as ``python -m coldoc_tasks.coldoc.cli COMMAND ...``, which is
how a background server is started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence

from ..durations import check_seconds
from ..exceptions import (
    ColdocTasksException,
    ColdocTasksServerRunningError,
    ColdocTasksStartError,
    LegacyInfofileError,
)
from ..selfcheck import run_checks
from ..terminal import WaitNote
from ..web.standalone import DEFAULT_HOST, MAX_CONNECTIONS, REQUEST_TIMEOUT, parse_bind, serve
from .compat import temporary_logfile
from .control import ping, server_pid, status
from .daemon import AUTHKEY_ENV, READY, tasks_daemon_start
from .fork import bind_fork_class
from .legacy import legacy_server_answers
from .options import SERVER_OPTIONS, argument_type
from .queues import DEFAULT_QUEUE, MODES, QueueConfig
from .report import format_status
from .server.main import run_server, setup_logging
from .stop import stop_server
from .watch import watch_status


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('infofile', help='the file where clients find the server')
    parser.add_argument('socket', nargs='?', help='the socket path (default: the previous one, else a fresh one '
                        'in a private temporary directory)')
    parser.add_argument('authkey', nargs='?', help='the authentication key (default: the previous one, else a '
                        'random one); note that a command line is visible to other users')
    parser.add_argument('--logfile', help='log to this file (rotating) instead of stderr')
    parser.add_argument('--concurrency', type=_positive_int,
                        help='tasks run at once on the default queue (default: CPUs)')
    parser.add_argument('--mode', choices=MODES, help='default queue: reuse workers, or a fresh process per task')
    parser.add_argument('--max-tasks-per-worker', type=_positive_int,
                        help='default queue: recycle a worker after N tasks')
    parser.add_argument('--queue', action='append', default=[], type=_queue_spec,
                        metavar='NAME[:CONCURRENCY[:MODE[:MAX_TASKS]]]',
                        help='declare a queue (repeatable), e.g. pdf:1:fresh; a task on a queue nobody declared '
                        'is refused, unless "*:N" is declared: then any name is accepted, all sharing N slots')
    for option in SERVER_OPTIONS:
        default = '' if option.default is None or option.kind is str else f' (default {option.default:g})'
        parser.add_argument(option.flag, type=argument_type(option),
                            metavar='|'.join(option.choices) or option.unit.upper().replace(' ', '_') or 'N',
                            help=option.help + default)
    parser.add_argument('--preload', action='append', default=[], metavar='MODULE',
                        help='import this module in the server, so that workers start with it (repeatable)')
    parser.add_argument('--verbose', '-v', action='store_true', help='log every task')


def _queue_spec(spec: str) -> QueueConfig:
    try:
        return QueueConfig.parse(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        return check_seconds('a duration', float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval(text: str) -> float:
    try:
        return check_seconds('the interval', float(text), minimum=0.1, maximum=3600.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be an integer >= 1, not {text!r}')
    return value


def _queues(args: argparse.Namespace) -> list[QueueConfig]:
    queues = list(args.queue)
    if args.concurrency is not None or args.mode or args.max_tasks_per_worker is not None:
        default = next((q for q in queues if q.name == DEFAULT_QUEUE), None) or QueueConfig()
        queues = [q for q in queues if q.name != DEFAULT_QUEUE]
        queues.append(QueueConfig(DEFAULT_QUEUE, args.concurrency or default.concurrency,
                                  args.mode or default.mode, args.max_tasks_per_worker or default.max_tasks_per_worker))
    return queues


def _server_options(args: argparse.Namespace) -> dict:
    options = {option.name: getattr(args, option.name) for option in SERVER_OPTIONS
               if getattr(args, option.name) is not None}
    options['preload'] = args.preload
    return options


def cmd_start(args: argparse.Namespace) -> int:

    queues = _queues(args)
    authkey = args.authkey
    if authkey is None and os.environ.get(AUTHKEY_ENV):
        authkey = bytes.fromhex(os.environ.pop(AUTHKEY_ENV))
    if args.detach and os.fork():
        os._exit(0)  # the caller reaps this parent at once; the server is re-parented to init

    def on_ready(info: dict) -> None:
        if args.ready_fd is not None:
            os.write(args.ready_fd, READY)
            os.close(args.ready_fd)
        if args.detach:  # nobody reads our output any more
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(devnull)
        else:
            print(f'coldoc task server (pid {info["pid"]}) serving on {info["socket"]}', flush=True)

    try:
        setup_logging(args.logfile, logging.DEBUG if args.verbose else logging.INFO)
        run_server(args.infofile, args.socket, authkey, queues=queues, logfile=args.logfile,
                   on_ready=on_ready, **_server_options(args))
    except ColdocTasksServerRunningError as exc:
        print(f'coldoc_tasks_cli: {exc}', file=sys.stderr)
        return 1
    except (ColdocTasksException, OSError, ValueError, ImportError) as exc:
        print(f'coldoc_tasks_cli: cannot start the server: {exc}', file=sys.stderr)
        return 1
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    logfile = args.logfile
    try:
        if logfile is None:  # a background server's log must go somewhere: a new file beside the infofile
            logfile = temporary_logfile(os.path.dirname(os.path.abspath(args.infofile)))
        with WaitNote(sys.stderr) as note:
            note(f'waiting for the task server of {args.infofile} to be ready (up to {args.timeout:g} s)...')
            pid = tasks_daemon_start(args.infofile, args.socket, args.authkey, logfile=logfile,
                                     queues=_queues(args), timeout=args.timeout, **_server_options(args))
    except (ColdocTasksStartError, OSError) as exc:
        print(f'coldoc_tasks_cli: {exc}', file=sys.stderr)
        if logfile != args.logfile and logfile and os.path.exists(logfile) and not os.path.getsize(logfile):
            os.unlink(logfile)  # the empty log made above
        return 1
    print(f'coldoc task server started (pid {pid})' + ('' if args.logfile else f', logging to {logfile}'))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    try:
        with WaitNote(sys.stderr) as note:
            report = stop_server(args.infofile, grace=args.grace, timeout=args.timeout, on_wait=note)
    except (ColdocTasksException, OSError) as exc:
        print(f'coldoc_tasks_cli: cannot stop the task server of {args.infofile}: {exc}', file=sys.stderr)
        return 1
    if not report.stopped:
        print(f'coldoc_tasks_cli: no task server answers for {args.infofile} ({report.reason})', file=sys.stderr)
        return 1
    print(report)
    return 0


def _legacy_note(exc: ColdocTasksException) -> str:
    """For an infofile of 0.2: say so, and whether its server answers."""

    if not isinstance(exc, LegacyInfofileError):
        return str(exc)
    pid = legacy_server_answers(exc.info)
    if pid is None:
        return f'{exc}; no 0.2 server answers at its address {exc.info["address"]} (starting a server replaces it)'
    return (f'{exc}; its coldoc_tasks 0.2 server (pid {pid}) answers: stop it with '
            f'"coldoc_tasks_cli coldoc stop {exc.path}"')


def cmd_ping(args: argparse.Namespace) -> int:
    try:
        answer = ping(args.infofile, timeout=args.timeout, raise_errors=True)
    except ColdocTasksException as exc:
        print(f'coldoc_tasks_cli: no answer from the task server of {args.infofile}: {_legacy_note(exc)}',
              file=sys.stderr)
        return 1
    print(f'pong from pid {answer["pid"]}, version {answer["version"]}')
    return 0


def cmd_pid(args: argparse.Namespace) -> int:
    pid = server_pid(args.infofile)
    if pid is None:
        print(f'coldoc_tasks_cli: no task server runs for {args.infofile}', file=sys.stderr)
        return 1
    print(pid)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        return watch_status(args.infofile, interval=args.interval, timeout=args.timeout)
    try:
        info = status(args.infofile, timeout=args.timeout)
    except ColdocTasksException as exc:
        print(f'coldoc_tasks_cli: no answer from the task server of {args.infofile}: {_legacy_note(exc)}',
              file=sys.stderr)
        return 1
    if args.json:
        json.dump(info, sys.stdout, indent=1, sort_keys=True)
        print()
    else:
        print(format_status(info))
    return 0


def _request_timeout(text: str) -> float:
    try:
        return check_seconds('the request timeout', float(text), minimum=0.1, maximum=3600.0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_connections(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'the number of connections must be a whole number, 1 or more, '
                                         f'not {text!r}')
    return int(text)


def _bind(text: str) -> tuple[str, int]:
    try:
        return parse_bind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_web(args: argparse.Namespace) -> int:
    host, port = args.bind
    try:
        return serve(args.infofile, host, port, timeout=args.timeout, request_timeout=args.request_timeout,
                     max_connections=args.max_connections)
    except (ColdocTasksException, OSError) as exc:
        print(f'coldoc_tasks_cli: cannot serve the status page of {args.infofile}: {exc}', file=sys.stderr)
        return 1


def cmd_test(args: argparse.Namespace) -> int:
    if ping(args.infofile, timeout=args.timeout) is None:
        print(f'coldoc_tasks_cli: no task server answers for {args.infofile}', file=sys.stderr)
        return 1
    started = time.monotonic()
    failures = run_checks(bind_fork_class(os.path.abspath(args.infofile)))
    print(f'self-check finished in {time.monotonic() - started:.2f} s')
    return min(failures, 125)


def add_subcommands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``coldoc`` and its commands to ``coldoc_tasks_cli``; return its
    commands, where the Django ones join them."""
    coldoc = subparsers.add_parser('coldoc', help='control a coldoc task server',
                                   description='Control a coldoc task server.')
    return _add_commands(coldoc)


def _add_commands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    commands = parser.add_subparsers(dest='coldoc_command', metavar='COMMAND', required=True)
    # start_with: coldoc_tasks 0.2's name for starting with what the infofile holds
    start = commands.add_parser('start', help='run a server in the foreground', aliases=['start_with'])
    _add_server_options(start)
    start.add_argument('--detach', action='store_true', help=argparse.SUPPRESS)
    start.add_argument('--ready-fd', type=int, help=argparse.SUPPRESS)
    start.set_defaults(handler=cmd_start)
    daemon = commands.add_parser('daemon', help='start a server in the background, return once it serves')
    _add_server_options(daemon)
    daemon.add_argument('--timeout', type=float, default=30.0, help='seconds to wait for it (default 30)')
    daemon.set_defaults(handler=cmd_daemon)
    for name, handler, text in [('stop', cmd_stop, 'stop the server (also: shutdown)'),
                                ('status', cmd_status, "show the server's state"),
                                ('ping', cmd_ping, 'check that the server answers'),
                                ('pid', cmd_pid, "print the server's pid"),
                                ('test', cmd_test, 'run a self-check against the live server'),
                                ('web', cmd_web, 'serve a live status page over HTTP')]:
        command = commands.add_parser(name, help=text, aliases=['shutdown'] if name == 'stop' else [])
        command.add_argument('infofile')
        command.add_argument('--timeout', type=float, default=60.0 if name == 'stop' else 5.0,
                             help='seconds to wait for an answer')
        command.set_defaults(handler=handler)
    commands.choices['stop'].add_argument('--grace', type=_seconds,
                                          help="seconds running tasks get to finish (default: the server's)")
    status_command = commands.choices['status']
    output = status_command.add_mutually_exclusive_group()
    output.add_argument('--json', action='store_true', help='machine-readable output')
    output.add_argument('--watch', action='store_true',
                        help='show the status again every interval (in place on a terminal) until Ctrl-C; '
                        'a server that does not answer is said once and asked again')
    status_command.add_argument('--interval', type=_interval, default=1.0, metavar='SECONDS',
                                help='seconds between two statuses with --watch (default 1)')
    commands.choices['web'].add_argument(
        '--bind', type=_bind, default=(DEFAULT_HOST, 0), metavar='HOST:PORT',
        help=f'where the page listens (default {DEFAULT_HOST}, a free port; port 0 picks one); an address '
        'other than loopback makes the page reachable from other machines')
    commands.choices['web'].add_argument(
        '--request-timeout', type=_request_timeout, default=REQUEST_TIMEOUT, metavar='SECONDS',
        help=f'seconds a client has to send a whole request, and a connection may stay idle '
        f'(default {REQUEST_TIMEOUT:g})')
    commands.choices['web'].add_argument(
        '--max-connections', type=_max_connections, default=MAX_CONNECTIONS, metavar='N',
        help=f'connections served at once; one more is answered 503 at once (default {MAX_CONNECTIONS})')
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m coldoc_tasks.coldoc.cli',
                                     description='Control a coldoc task server.')
    _add_commands(parser)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == '__main__':
    sys.exit(main())
