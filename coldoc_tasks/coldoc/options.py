"""The coldoc server's options, defined once.

Every way of starting a server reads its options from :data:`SERVER_OPTIONS`:
the command line (``--result-retention 600``), the Python functions
(``run_server(..., result_retention=600)``, ``tasks_daemon_start``) and the
Django settings (``COLDOC_TASKS_RESULT_RETENTION = 600``).  Each option knows
its type, its default and its range, and :meth:`ServerOption.check` refuses a
value outside it with a :class:`ColdocTasksOptionError` that names the
option, in the spelling of where it came from, and the range; so a nonsense
value stops a start before anything is created.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ..durations import MAX_SECONDS, check_seconds
from ..exceptions import ColdocTasksOptionError

__all__ = ['ColdocTasksOptionError', 'ServerOption', 'SERVER_OPTIONS', 'OPTIONS_BY_NAME', 'check_server_options',
           'MAX_SECONDS', 'argument_type']

#: The largest message the wire format can carry (its length field has 32 bits).
MAX_MESSAGE_LIMIT = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class ServerOption:
    """One option of the server: its name as a Python keyword, its type
    (``float`` seconds, ``int``, or ``str``: a path, or one of ``choices``),
    default, range and help text.
    ``zero_means``: if set, 0 is accepted besides the range and means this
    (for a limit, ``'no limit'``: the option is off).  ``None`` (on the
    command line, leaving the option out) always means the default."""

    name: str
    kind: type
    default: Any
    minimum: float
    maximum: float
    help: str
    unit: str = 'seconds'
    zero_means: str = ''
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """The command-line spelling: ``--result-retention``."""
        return '--' + self.name.replace('_', '-')

    @property
    def setting(self) -> str:
        """The Django setting: ``COLDOC_TASKS_RESULT_RETENTION``."""
        return 'COLDOC_TASKS_' + self.name.upper()

    def describe_range(self) -> str:
        if self.kind is str:
            return f'one of {", ".join(self.choices)}' if self.choices else f'a {self.unit}'
        if self.kind is int:
            off = f', or 0 for {self.zero_means}' if self.zero_means else ''
            return (f'an integer from {int(self.minimum)} to {int(self.maximum)}'
                    f'{" " + self.unit if self.unit else ""}{off}')
        return f'a number of {self.unit} from {self.minimum:g} to {self.maximum:g}'

    def check(self, value: Any, spelled: str | None = None) -> Any:
        """``value`` as the option's type, or raise
        :class:`ColdocTasksOptionError` naming the option (as ``spelled``,
        default its keyword) and its range."""
        label = spelled or self.name
        if self.kind is str:
            return self._check_text(value, label)
        if self.zero_means and not isinstance(value, bool) and value == 0:
            return self.kind(0)
        if self.kind is float:
            try:
                return check_seconds(label, value, minimum=self.minimum, maximum=self.maximum)
            except (TypeError, ValueError) as exc:
                raise ColdocTasksOptionError(str(exc)) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() \
                or not self.minimum <= value <= self.maximum:
            raise ColdocTasksOptionError(f'{label} must be {self.describe_range()}, not {value!r}')
        return int(value)

    def _check_text(self, value: Any, label: str) -> str:
        if self.choices:
            if value not in self.choices:
                raise ColdocTasksOptionError(f'{label} must be {self.describe_range()}, not {value!r}')
            return value
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value) or '\0' in os.fspath(value):
            raise ColdocTasksOptionError(f'{label} must be {self.describe_range()}, not {value!r}')
        return os.fspath(value)

    def parse(self, text: str, spelled: str | None = None) -> Any:
        """Read the option from a command-line or environment string."""
        if self.kind is str:
            return self.check(text, spelled or self.flag)
        try:
            value = int(text) if self.kind is int else float(text)
        except (TypeError, ValueError):
            raise ColdocTasksOptionError(
                f'{spelled or self.flag} must be {self.describe_range()}, not {text!r}') from None
        return self.check(value, spelled or self.flag)


SERVER_OPTIONS: tuple[ServerOption, ...] = (
    ServerOption('result_retention', float, 3600.0, 1.0, MAX_SECONDS,
                 'seconds an uncollected result is kept'),
    ServerOption('terminate_grace', float, 2.0, 0.0, 3600.0,
                 'seconds between SIGTERM and SIGKILL when a task is terminated'),
    ServerOption('stop_grace', float, 10.0, 0.0, 24 * 3600.0,
                 'seconds running tasks get to finish when the server stops'),
    ServerOption('handshake_timeout', float, 5.0, 0.05, 3600.0,
                 'seconds a new connection has to authenticate'),
    ServerOption('max_message_size', int, 512 * 1024 * 1024, 1024, MAX_MESSAGE_LIMIT,
                 'largest call or result, in bytes', unit='bytes'),
    ServerOption('max_memory_per_worker', int, 0, 1, 1024 * 1024,
                 'recycle a reused worker whose resident memory is over this many MB after a task (0: no limit; '
                 'a fresh worker never runs a second task anyway)', unit='MB', zero_means='no limit'),
    ServerOption('lent_worker_keepalive', float, 5.0, 0.0, 24 * 3600.0,
                 'seconds a reused worker started for a lent slot (a task waiting for a subtask lends its slot) '
                 'stays idle, ready for the next nested task, before it retires'),
    ServerOption('journal', str, None, 0, 0,
                 'record every task in this file, so that queued tasks and uncollected results survive a crash '
                 'or a restart (default: none, everything stays in memory)', unit='file path'),
    ServerOption('journal_sync', str, 'batch', 0, 0,
                 'when the journal is synced to disk: every batch (each turn of the server that recorded '
                 'something; survives a crash of the machine), or once a second (faster; survives a crash or '
                 'a kill of the server, but a crash of the machine may lose the last second)',
                 unit='', choices=('batch', 'second')),
    ServerOption('stop_queued', str, None, 0, 0,
                 'what stop does with queued tasks: cancel them, keep them in the journal for the next start, '
                 'or drain (run them all first) (default: keep with a journal, else cancel)',
                 unit='', choices=('cancel', 'keep', 'drain')),
)

OPTIONS_BY_NAME: dict[str, ServerOption] = {option.name: option for option in SERVER_OPTIONS}


def check_server_options(options: Mapping[str, Any], spelling: str = 'keyword') -> dict[str, Any]:
    """Check every option in ``options`` (keyword -> value; ``None`` means
    the default) and return them with the defaults filled in.  ``spelling``
    (``'keyword'``, ``'flag'`` or ``'setting'``) is how the error names an
    option.  Raise :class:`ColdocTasksOptionError` for an unknown name or a
    value out of range."""
    unknown = sorted(set(options) - set(OPTIONS_BY_NAME))
    if unknown:
        raise ColdocTasksOptionError(f'unknown server option(s) {", ".join(unknown)}; '
                                     f'known are {", ".join(OPTIONS_BY_NAME)}')
    checked = {}
    for option in SERVER_OPTIONS:
        value = options.get(option.name)
        label = {'keyword': option.name, 'flag': option.flag, 'setting': option.setting}[spelling]
        checked[option.name] = option.default if value is None else option.check(value, label)
    return checked


def argument_type(option: ServerOption):
    """The argparse ``type`` of a server option: its value, or a usage error
    saying what it accepts."""
    def parse(text: str):
        try:
            return option.parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'must be {option.describe_range()}, not {text!r}') from None
    parse.__name__ = option.name  # argparse names the type in some messages
    return parse
