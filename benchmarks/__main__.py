"""``python -m benchmarks``: see :mod:`benchmarks.driver`."""

import sys

from .driver import main

sys.exit(main())
