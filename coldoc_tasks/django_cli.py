"""Moved to :mod:`coldoc_tasks.django.cli`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from .django import cli as _moved
from .django.server import server_main

if __name__ == '__main__':  # how servers of earlier versions were started
    sys.exit(server_main(sys.argv[1:]))
else:
    sys.modules[__name__] = _moved
