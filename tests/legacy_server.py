"""A stand-in for a coldoc_tasks 0.2 server, for the upgrade tests.

Run as ``python -m tests.legacy_server INFOFILE DIRECTORY [--ignore-shutdown]``:
it listens, as a 0.2 server does, with a ``SyncManager`` on an AF_UNIX
socket in DIRECTORY, offering ``ping__``, ``getpid__``, ``status__`` and
``shutdown__``; writes INFOFILE in 0.2's plain-config format; prints
``ready`` on stdout; and serves until ``shutdown__`` is called (unless
``--ignore-shutdown``) or a signal ends it.  It is written for these tests
from what 0.2's servers are seen to do, not taken from 0.2.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from multiprocessing.managers import SyncManager


class LegacyManager(SyncManager):
    """The manager class of the stand-in server."""


def legacy_infofile_text(address: str, authkey: bytes, pid: int | None, directory: str) -> str:
    """The content of a 0.2 infofile for these values."""
    return '\n'.join([
        '# written by a coldoc_tasks 0.2 server',
        f'address={address}',
        f'authkey/32={base64.b32encode(authkey).decode("ascii")}',
        f'pid/i={pid}' if pid is not None else 'pid/r=None',
        f'tempdir={directory}',
        'logfile/r=None',
        f'pythonpath/64s={base64.b64encode(directory.encode()).decode("ascii")}',
        'with_django/r=False',
        '',
    ])


def main(argv: list[str]) -> int:
    infofile, directory = argv[:2]
    ignore_shutdown = '--ignore-shutdown' in argv[2:]
    address = os.path.join(directory, 'manager_socket_' + secrets.token_hex(4))
    authkey = secrets.token_bytes(10)
    served = {}

    def shutdown__() -> None:
        if not ignore_shutdown:
            served['server'].stop_event.set()

    LegacyManager.register('ping__', callable=lambda: True)
    LegacyManager.register('getpid__', callable=os.getpid)
    LegacyManager.register('status__', callable=lambda: {'processes': {}})
    LegacyManager.register('shutdown__', callable=shutdown__)
    server = served['server'] = LegacyManager(address=address, authkey=authkey).get_server()
    with open(infofile, 'w', encoding='utf-8') as stream:
        stream.write(legacy_infofile_text(address, authkey, os.getpid(), directory))
    print('ready', flush=True)
    server.serve_forever()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
