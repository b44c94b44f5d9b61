"""Fixtures shared by the tests.

``backend`` runs a test once per backend.  A backend is described by a
:class:`Backend`: ``make`` builds a fork object (picklable, so nested tasks
can build their own); what the backend can do is read from its fork class's
capability flags (``backend.fork_class.shared_wait``, ...), so that the tests
keep no table of their own.  A backend joins
the contract suite from its own plugin module (``tests/fixtures_<backend>.py``)
by listing its names in ``BACKENDS`` and providing a fixture
``backend_<name>`` for each.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import pytest

pytest.register_assert_rewrite('tests.fixtures_coldoc', 'tests.fixtures_celery', 'tests.fixtures_django')

from coldoc_tasks.base import ForkBase  # noqa: E402 - after the rewrite hook
from coldoc_tasks.simple_tasks import NoFork, SimpleFork  # noqa: E402
from tests import fixtures_celery, fixtures_coldoc  # noqa: E402
from tests.helpers import Rendezvous  # noqa: E402

pytest_plugins = ['tests.fixtures_coldoc', 'tests.fixtures_celery', 'tests.fixtures_django']

IN_CI = os.environ.get('CI', '').lower() in ('1', 'true', 'yes')


@dataclasses.dataclass
class Backend:
    name: str
    #: a fork class (maybe bound to a server), or a functools.partial of one
    make: Callable

    @property
    def fork_class(self) -> type[ForkBase]:
        """The fork class that ``make`` instantiates: its capability flags say
        what the backend can do."""
        return fork_class_of(self.make)

    def __str__(self) -> str:
        return self.name


def fork_class_of(make: Callable) -> type[ForkBase]:
    """The fork class behind ``make``: a fork class, or a partial of one."""
    while isinstance(make, functools.partial):
        make = make.func
    if not (isinstance(make, type) and issubclass(make, ForkBase)):
        raise TypeError(f'{make!r} is neither a fork class nor a functools.partial of one')
    return make


def skip_or_fail(reason: str):
    """A missing service skips a test locally and fails it under CI=true."""
    if IN_CI:
        pytest.fail(f'required service unavailable under CI: {reason}')
    pytest.skip(reason)


BACKEND_NAMES = ['nofork', 'simple', *fixtures_coldoc.BACKENDS, *fixtures_celery.BACKENDS]


@pytest.fixture
def backend_nofork():
    return Backend('nofork', NoFork)


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
