"""``coldoc_tasks_cli``: the command line of coldoc_tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='coldoc_tasks_cli',
        description='Run Python callables in the background: control the coldoc task server and Celery workers.',
    )
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    parser.add_subparsers(dest='command', metavar='COMMAND')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``coldoc_tasks_cli``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f'{parser.prog}: error: a command is needed', file=sys.stderr)
        return 2
    return args.handler(args)


if __name__ == '__main__':
    sys.exit(main())
