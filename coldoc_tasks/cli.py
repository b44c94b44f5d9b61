"""``coldoc_tasks_cli``: the command line of coldoc_tasks.

Each backend with something to control contributes one sub-command group
(``coldoc``, ``celery``) from its own module, through a function
``add_subcommands(subparsers)`` that adds its parser and sets, on each leaf
parser, ``handler``: a function taking the parsed arguments and returning the
exit status.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from .django.cli import add_django_commands

#: Modules that contribute sub-commands, in the order they are listed.
SUBCOMMAND_MODULES = ('coldoc_tasks.coldoc.cli', 'coldoc_tasks.celery.cli')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='coldoc_tasks_cli',
        description='Run Python callables in the background: control the coldoc task server and Celery workers.',
    )
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    groups = {}
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        groups[name] = module.add_subcommands(subparsers)
    # the coldoc server of a Django site: coldoc django_start ..., from its settings
    add_django_commands(groups['coldoc_tasks.coldoc.cli'])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coldoc_tasks_cli``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, 'handler', None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print(f'{parser.prog}: error: a command is needed', file=sys.stderr)
        return 2
    try:
        return handler(args)
    except BrokenPipeError:
        # the reader went away (status | head): nothing left to say, and no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1


if __name__ == '__main__':
    sys.exit(main())
