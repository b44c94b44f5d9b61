"""One small shape over every system: ``submit`` (run), then ``collect`` (wait).

:data:`SYSTEMS` maps each system's name to a factory of its adapter; the
factories import lazily, so a system whose packages are missing fails alone.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Adapter, Unavailable


def _local(name: str) -> Callable[[], Adapter]:
    def make() -> Adapter:
        from . import local

        return local.LOCAL[name]()

    return make


def _coldoc(mode: str, journal: str = '') -> Callable[[], Adapter]:
    def make() -> Adapter:
        from .coldoc import ColdocAdapter

        return ColdocAdapter(mode, journal=bool(journal), journal_sync=journal or 'batch')

    return make


def _peer(name: str) -> Callable[[], Adapter]:
    def make() -> Adapter:
        from . import peers

        return peers.PEERS[name]()

    return make


def _ours_celery() -> Adapter:
    from .ours_celery import OursCeleryAdapter

    return OursCeleryAdapter()


#: Every system, in the order of the report's tables.
SYSTEMS: dict[str, Callable[[], Adapter]] = {
    'coldoc-reuse': _coldoc('reuse'),
    'coldoc-fresh': _coldoc('fresh'),
    'coldoc-journal': _coldoc('reuse', journal='batch'),
    'coldoc-journal-second': _coldoc('reuse', journal='second'),
    'nofork': _local('nofork'),
    'simple': _local('simple'),
    'celery': _ours_celery,
    'ppe': _local('ppe'),
    'barefork': _local('barefork'),
    'celery-peer': _peer('celery-peer'),
    'rq': _peer('rq'),
    'huey': _peer('huey'),
}

__all__ = ['Adapter', 'SYSTEMS', 'Unavailable']
