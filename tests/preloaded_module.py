"""A module whose import leaves the importing process's pid behind, to see
where it was imported (the server, with --preload, or each worker)."""

import os

IMPORTED_IN = os.getpid()


def where_imported():
    return IMPORTED_IN, os.getppid()
