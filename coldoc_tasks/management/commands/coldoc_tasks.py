"""``manage.py coldoc_tasks COMMAND``: control the site's coldoc task server,
with everything read from the settings.  ``COMMAND`` is one of
``start|daemon|autostart|stop|status|ping|pid|test``; coldoc_tasks 0.2's form
``manage.py coldoc_tasks --subcmd {autostart,start,stop,shutdown,test,ping,status}``
works too."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...django.cli import ALIASES, COMMANDS, add_command_arguments, run

#: The values of 0.2's ``--subcmd``.
SUBCMDS = ('autostart', 'start', 'stop', 'shutdown', 'test', 'ping', 'status')


class Command(BaseCommand):
    """Control the site's coldoc task server."""

    help = 'Control the coldoc task server of this site: ' + '; '.join(
        f'{name}: {text}' for name, text in COMMANDS.items())
    # the server and its checks are what this command is about: do not stop on them
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument('--subcmd', choices=SUBCMDS,
                            help='the command, as coldoc_tasks 0.2 took it (instead of COMMAND)')
        commands = parser.add_subparsers(dest='command', metavar='COMMAND')
        for name, text in COMMANDS.items():
            aliases = [alias for alias, target in ALIASES.items() if target == name]
            add_command_arguments(commands.add_parser(name, help=text, description=text, aliases=aliases), name)

    def handle(self, *args: Any, **options: Any) -> None:
        command, subcmd = options.get('command'), options.get('subcmd')
        if command and subcmd and ALIASES.get(command, command) != ALIASES.get(subcmd, subcmd):
            raise CommandError(f'give the command once: {command!r} and --subcmd {subcmd!r} differ')
        command = ALIASES.get(command or subcmd, command or subcmd)
        if not command:
            raise CommandError(f'give a command: one of {", ".join(COMMANDS)} (or --subcmd)')
        status = run(command, options)
        if status:
            # run() has said what went wrong, in one line: only the exit status is left to give
            raise SystemExit(status)
