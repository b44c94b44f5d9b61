"""Where a Django task goes: the site's coldoc task server (the default) or
Celery (``OPTIONS = {"SERVER": "celery"}``).  A route submits a task's spec
and answers, for a result id, what the server knows of it, from any process
of the site, as often as asked, without collecting anything.

Each route says what it can do, and the backend's capability flags follow:
the coldoc server holds a deferred task itself (``run_after``) and orders a
queue by priority; Celery holds a deferred task in the worker that received
it (its ``eta``) and has no priorities over Redis that mean what Django's do.
"""

from __future__ import annotations

from typing import Any

from ...coldoc.records import TaskFacts, describe, submit_kept, terminate
from ...exceptions import ColdocTasksConnectionError, InfofileError
from ..settings import read_settings
from .results import encode_spec
from .runner import run_task

__all__ = ['ColdocRoute', 'make_route', 'ROUTES']


class ColdocRoute:
    """Tasks run on the site's coldoc server (``COLDOC_TASKS_INFOFILE``, or
    the one the settings autostart)."""

    name = 'coldoc'
    supports_defer = True
    supports_priority = True

    def __init__(self, options: dict[str, Any]):
        self._infofile: str | None = options.get('INFOFILE')

    @property
    def infofile(self) -> str:
        if self._infofile is None:
            self._infofile = read_settings().infofile
        return self._infofile

    def declared_queues(self) -> list[str]:
        """The queues the site's server runs, as the settings declare them
        (``COLDOC_TASKS_QUEUES``; ``*`` among them if it takes any name)."""
        queues = [queue.name for queue in read_settings().queues]
        return sorted({'default', *queues})

    def submit(self, spec: dict[str, Any]) -> None:
        try:
            submit_kept(self.infofile, run_task, (spec,), queue=spec['queue_name'], priority=spec['priority'],
                        run_after=spec['run_after'], record=encode_spec(spec), task_id=spec['id'],
                        name=spec['task'])
        except (ColdocTasksConnectionError, InfofileError) as exc:
            raise ColdocTasksConnectionError(
                f'the coldoc task server of this site ({self.infofile}) cannot take the task {spec["task"]}: {exc}; '
                f'start it (manage.py coldoc_tasks daemon) or let the site autostart it '
                f'(COLDOC_TASKS_AUTOSTART)') from exc

    def facts(self, result_id: str) -> TaskFacts:
        """What the server knows of ``result_id``; raise
        :class:`ColdocTasksUnknownTaskError` if it knows nothing."""
        return describe(self.infofile, result_id)

    def terminate(self, result_id: str) -> None:
        terminate(self.infofile, result_id)


def _celery_route(options: dict[str, Any]) -> Any:
    from .celery_route import CeleryRoute  # Celery is optional

    return CeleryRoute(options)


ROUTES = {'coldoc': ColdocRoute, 'celery': _celery_route}


def make_route(options: dict[str, Any]) -> Any:
    """The route ``OPTIONS["SERVER"]`` names (``coldoc`` by default)."""
    return ROUTES[options.get('SERVER', 'coldoc')](options)

