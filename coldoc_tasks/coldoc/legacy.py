"""Infofiles and servers of coldoc_tasks 0.2, met when a site upgrades.

0.2 wrote its infofile as "plain config" text, not JSON: one ``key=value``
per line, where the key may carry modifiers that say how to decode the
value, applied left to right (``key/MODS=value``)::

    address=/tmp/coldoc_tasks_ab12/manager_socket_XyZ
    authkey/32=MFRGGZDFMZTWQ2LK
    pid/i=4321

    ===========  ============================================
    modifier     the value becomes
    ===========  ============================================
    ``i``        an int
    ``f``        a float
    ``r``        a Python literal (``None``, ``True``, '...')
    ``32``       bytes, base32-decoded
    ``64``       bytes, base64-decoded
    ``s``        a str (bytes decoded as UTF-8)
    ``b``        bytes (a str encoded as UTF-8)
    ``p``        a pickle: never loaded here (a file is no
                 reason to run code); the key is left out
    ===========  ============================================

Lines starting with ``#`` and blank lines are ignored.  Its server is a
:class:`multiprocessing.managers.SyncManager` listening on ``address`` (an
AF_UNIX socket) with ``authkey``, offering ``ping__``, ``getpid__``,
``status__`` and ``shutdown__`` among others.

This module reads such a file and talks to such a server just enough to
know whether it is alive and to stop it; a live 0.2 server is never
replaced, a dead one's infofile is replaced by a fresh one of ours.
"""

from __future__ import annotations

import ast
import base64
import binascii
import os
import re
import threading
from typing import Any

from ..exceptions import InfofileError
from .safefiles import PathLike, read_own_file, socket_answers

#: ``key`` or ``key/MODIFIERS``, then ``=``.
_LINE = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)(?:/([a-z0-9]*))?=(.*)')
_MODIFIER = re.compile(r'32|64|[ifrsbp]')
#: The keys a 0.2 infofile must have.
REQUIRED_KEYS = ('address', 'authkey')
#: The registered callables of a 0.2 server used here.
LEGACY_CALLS = ('ping__', 'getpid__', 'status__', 'shutdown__')


class _Undecodable(ValueError):
    pass


def _decode(modifiers: str, text: str) -> Any:
    tokens = _MODIFIER.findall(modifiers)
    if ''.join(tokens) != modifiers:
        raise _Undecodable(f'unknown modifier in /{modifiers}')
    value: Any = text
    for token in tokens:
        if token == 'p':
            raise _Undecodable('a pickled value')
        try:
            if token == 'i':
                value = int(value)
            elif token == 'f':
                value = float(value)
            elif token == 'r':
                value = ast.literal_eval(value)
            elif token == '32':
                value = base64.b32decode(value)
            elif token == '64':
                value = base64.b64decode(value, validate=True)
            elif token == 's':
                value = value.decode('utf-8') if isinstance(value, bytes) else str(value)
            elif token == 'b':
                value = value.encode('utf-8') if isinstance(value, str) else bytes(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError, binascii.Error) as exc:
            raise _Undecodable(f'/{modifiers}: {exc}') from None
    return value


def parse_legacy(text: str) -> dict[str, Any]:
    """The keys of a 0.2 infofile's text; raise ``ValueError`` saying why
    if it is not one.  ``authkey`` comes back as bytes, ``pid`` as int or
    ``None``."""
    info: dict[str, Any] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise ValueError(f'line {number} is not key=value')
        key, modifiers, value = match.groups()
        try:
            info[key] = _decode(modifiers or '', value)
        except _Undecodable as exc:
            if key in REQUIRED_KEYS or key == 'pid':
                raise ValueError(f'line {number}: {exc}') from None
    missing = [key for key in REQUIRED_KEYS if key not in info]
    if missing:
        raise ValueError(f'it lacks {", ".join(missing)}')
    if not isinstance(info['address'], str) or not info['address']:
        raise ValueError('its address is not a socket path')
    if isinstance(info['authkey'], str):
        info['authkey'] = info['authkey'].encode('utf-8')
    if not isinstance(info['authkey'], bytes) or not info['authkey']:
        raise ValueError('its authkey is not a key')
    pid = info.get('pid')
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
        raise ValueError(f'its pid is not a process id: {pid!r}')
    info['pid'] = pid
    return info


def read_legacy_infofile(path: PathLike) -> dict[str, Any]:
    """Read a 0.2 infofile (``address``, ``authkey`` bytes, ``pid`` int or
    ``None``, and its other keys); raise :class:`InfofileError` if ``path``
    is not one.  A link at ``path`` is not followed."""
    try:
        data = read_own_file(path)
    except FileNotFoundError:
        raise InfofileError(f'the infofile {os.fspath(path)} does not exist') from None
    except OSError as exc:
        raise InfofileError(f'the infofile {os.fspath(path)} cannot be read: {exc}') from None
    return legacy_from_bytes(path, data)


def legacy_from_bytes(path: PathLike, data: bytes) -> dict[str, Any]:
    """:func:`read_legacy_infofile` on content already read."""
    try:
        return parse_legacy(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InfofileError(f'{os.fspath(path)} is not an infofile of coldoc_tasks 0.2 ({exc})') from None


def is_legacy_text(data: bytes) -> bool:
    """True if ``data`` is the content of a 0.2 infofile."""
    try:
        parse_legacy(data.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


# -- its server ---------------------------------------------------------------------------


def _bounded(call, timeout: float) -> Any:
    """Run ``call()`` in a daemon thread; its value, or ``None`` if it raised
    or did not return within ``timeout`` (a wedged peer leaves only that
    thread blocked, never us)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception:  # noqa: BLE001 - any failure means: no usable answer
            pass

    thread = threading.Thread(target=run, name='coldoc-tasks-legacy-probe', daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else None


def _manager(info: dict[str, Any]):
    from multiprocessing.managers import SyncManager

    manager = SyncManager(address=info['address'], authkey=info['authkey'])
    for name in LEGACY_CALLS:
        manager.register(name)
    manager.connect()
    return manager


def legacy_server_answers(info: dict[str, Any], timeout: float = 2.0) -> int | None:
    """The pid of a live 0.2 server answering at ``info['address']`` with
    ``info['authkey']``, else ``None``; never waits longer than ``timeout``."""
    try:
        if not socket_answers(info['address']):
            return None
    except OSError:
        return None

    def ask() -> int | None:
        manager = _manager(info)
        if manager.ping__()._getvalue() is not True:
            return None
        pid = manager.getpid__()._getvalue()
        return pid if isinstance(pid, int) and not isinstance(pid, bool) else None

    return _bounded(ask, timeout)


def legacy_request_shutdown(info: dict[str, Any], timeout: float = 5.0) -> bool:
    """Ask a 0.2 server to shut down; True if the request was delivered."""
    def ask() -> bool:
        manager = _manager(info)
        try:
            manager.shutdown__()
        except (EOFError, OSError):
            pass  # a server that stops at once goes before the reply to the call is made
        return True

    return bool(_bounded(ask, timeout))
