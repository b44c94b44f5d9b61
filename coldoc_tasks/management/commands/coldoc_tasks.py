"""``manage.py coldoc_tasks start|daemon|stop|status|ping|pid|test``: control
the site's coldoc task server, with everything read from the settings."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...django_cli import COMMANDS, add_command_arguments, run


class Command(BaseCommand):
    """Control the site's coldoc task server."""

    help = 'Control the coldoc task server of this site: ' + '; '.join(
        f'{name}: {text}' for name, text in COMMANDS.items())
    # the server and its checks are what this command is about: do not stop on them
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
        for name, text in COMMANDS.items():
            add_command_arguments(commands.add_parser(name, help=text, description=text), name)

    def handle(self, *args: Any, **options: Any) -> None:
        status = run(options['command'], options)
        if status:
            raise CommandError(f'coldoc_tasks {options["command"]} failed (exit status {status})', returncode=status)
