"""Moved to :mod:`coldoc_tasks.django.checks`; this name stays for the code and the
pickles that use it (it is that same module)."""

import sys

from .django import checks as _moved

sys.modules[__name__] = _moved
