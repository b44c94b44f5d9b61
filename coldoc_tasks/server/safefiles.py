"""Moved to :mod:`coldoc_tasks.coldoc.safefiles`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from ..coldoc import safefiles as _moved

sys.modules[__name__] = _moved
