"""Moved to :mod:`coldoc_tasks.celery.app`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from .celery import app as _moved

sys.modules[__name__] = _moved
