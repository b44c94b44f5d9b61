"""Moved to :mod:`coldoc_tasks.coldoc.cli`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from .coldoc import cli as _moved

if __name__ == '__main__':  # how servers of earlier versions were started
    sys.exit(_moved.main())
else:
    sys.modules[__name__] = _moved
