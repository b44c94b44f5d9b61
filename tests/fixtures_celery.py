"""Fixtures for the celery backend (a pytest plugin loaded by conftest.py).

``BACKENDS`` lists the names this module adds to the contract suite; for each
name N there is a fixture ``backend_N`` returning a ``tests.conftest.Backend``.
"""

BACKENDS: list[str] = []
