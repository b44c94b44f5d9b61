"""Moved to :mod:`coldoc_tasks.coldoc.server.server`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from ..coldoc.server import server as _moved

sys.modules[__name__] = _moved
