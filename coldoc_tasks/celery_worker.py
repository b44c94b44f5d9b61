"""Moved to :mod:`coldoc_tasks.celery.worker`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from .celery import worker as _moved

sys.modules[__name__] = _moved
