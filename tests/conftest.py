"""Fixtures shared by the tests.

``backend`` runs a test once per backend.  A backend is described by a
:class:`Backend`: ``make`` builds a fork object (picklable, so nested tasks
can build their own), and flags say what the backend can do.  A backend joins
the contract suite from its own plugin module (``tests/fixtures_<backend>.py``)
by listing its names in ``BACKENDS`` and providing a fixture
``backend_<name>`` for each.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import pytest

pytest.register_assert_rewrite('tests.fixtures_coldoc', 'tests.fixtures_celery', 'tests.fixtures_django')

from coldoc_tasks.simple_tasks import NoFork, SimpleFork  # noqa: E402 - after the rewrite hook
from tests import fixtures_celery, fixtures_coldoc  # noqa: E402
from tests.helpers import Rendezvous  # noqa: E402

pytest_plugins = ['tests.fixtures_coldoc', 'tests.fixtures_celery', 'tests.fixtures_django']

IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


@dataclasses.dataclass
class Backend:
    name: str
    make: Callable
    #: the task runs inline in run(): no timeout, no kill, no terminate
    inline: bool = False
    #: a pickled fork object can be waited for from another process
    shared: bool = False
    #: arguments are pickled (so unpicklable ones are refused at run())
    pickles_arguments: bool = False

    def __str__(self) -> str:
        return self.name


def skip_or_fail(reason: str):
    """A missing service skips a test locally and fails it under CI=true."""
    if IN_CI:
        pytest.fail(f'required service unavailable under CI: {reason}')
    pytest.skip(reason)


BACKEND_NAMES = ['nofork', 'simple', *fixtures_coldoc.BACKENDS, *fixtures_celery.BACKENDS]


@pytest.fixture
def backend_nofork():
    return Backend('nofork', NoFork, inline=True)


@pytest.fixture
def backend_simple():
    return Backend('simple', SimpleFork)


@pytest.fixture(params=BACKEND_NAMES)
def backend(request) -> Backend:
    return request.getfixturevalue(f'backend_{request.param}')


@pytest.fixture
def rendezvous():
    point = Rendezvous()
    yield point
    point.close()
