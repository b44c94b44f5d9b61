"""The Django Tasks backend of coldoc_tasks: Django's own task API
(``@task``, ``enqueue``, ``get_result``) on real background workers, the
coldoc task server's, with no broker and no database worker; or Celery's,
by configuration::

    TASKS = {
        'default': {
            'BACKEND': 'coldoc_tasks.django.backend.ColdocTasksBackend',
            'QUEUES': ['default', 'pdf'],       # queues of the server (COLDOC_TASKS_QUEUES)
            'OPTIONS': {'SERVER': 'coldoc'},    # or 'celery'
        },
    }

``enqueue`` returns a READY result at once; the server keeps the result, so
``get_result(id)`` and ``refresh()`` work from any process of the site, as
often as wanted, until the server's result retention passes.  Django has no
call to stop a task: :meth:`ColdocTasksBackend.terminate` does, by result id.
A task's progress (``coldoc_tasks.progress(...)`` inside it) is read with
:meth:`ColdocTasksBackend.get_progress`.  See ``docs/django-tasks.md``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core import checks
from django.utils import timezone

from ..base import new_task_id
from ..exceptions import ColdocTasksUnknownTaskError
from ..progress import Progress
from .tasks.api import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from .tasks.results import decode_spec, make_spec, require_json, result_from_facts, task_from_spec
from .tasks.routes import ROUTES, make_route

__all__ = ['ColdocTasksBackend', 'OPTION_NAMES']

logger = logging.getLogger(__name__)

#: What ``OPTIONS`` may set: ``SERVER`` (``coldoc`` or ``celery``), ``INFOFILE``
#: (the coldoc server's; default ``COLDOC_TASKS_INFOFILE``), ``CELERYCONFIG``
#: (Celery's; default ``COLDOC_TASKS_CELERYCONFIG``).
OPTION_NAMES = ('SERVER', 'INFOFILE', 'CELERYCONFIG')


def _option_problems(options: Any) -> list[str]:
    if not isinstance(options, dict):
        return [f'OPTIONS must be a dict, not {type(options).__name__}']
    problems = [f'OPTIONS has an unknown key {key!r} (known: {", ".join(OPTION_NAMES)})'
                for key in options if key not in OPTION_NAMES]
    server = options.get('SERVER', 'coldoc')
    if server not in ROUTES:
        problems.append(f'OPTIONS["SERVER"] is {server!r}: it must be one of {", ".join(map(repr, ROUTES))}')
    for name in ('INFOFILE', 'CELERYCONFIG'):
        path = options.get(name)
        if path is not None and not isinstance(path, str):
            problems.append(f'OPTIONS["{name}"] must be a str path, not {type(path).__name__}')
    return problems


class ColdocTasksBackend(BaseTaskBackend):
    """Django tasks on the coldoc task server (or on Celery: ``OPTIONS =
    {"SERVER": "celery"}``).  Every capability flag is a feature of the
    server, not an emulation: ``supports_defer`` (the server holds a task
    until its ``run_after``), ``supports_priority`` (-100 to 100 orders
    its queue), ``supports_async_task`` (an ``async def`` task runs in an
    event loop of its worker), ``supports_get_result`` (from any process).
    """

    supports_defer = True
    supports_priority = True
    supports_async_task = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict) -> None:
        super().__init__(alias, params)
        # Reported by check() and by validate_task: raising here would stop
        # Django's checks from running at all.
        self.problems = _option_problems(self.options)
        options = self.options if not self.problems else {}
        self.route = make_route(options)
        self.supports_defer = self.route.supports_defer
        self.supports_priority = self.route.supports_priority

    def validate_task(self, task: Task) -> None:
        """Django's checks (a module-level function, a context argument, the
        priority's range, an aware ``run_after``, a queue of ``QUEUES``),
        and a backend whose ``OPTIONS`` are bad."""
        if self.problems:
            raise InvalidTask(f'the task backend {self.alias!r} is misconfigured: {"; ".join(self.problems)}')
        super().validate_task(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Send the task to the server; return its READY result at once.
        Arguments that JSON cannot hold, or would change (a dict key that is
        not a str, a NaN), raise ``TypeError`` or ``ValueError`` here."""
        self.validate_task(task)
        result = TaskResult(
            task=task, id=new_task_id(), status=TaskResultStatus.READY, enqueued_at=timezone.now(),
            started_at=None, finished_at=None, last_attempted_at=None, args=require_json(args, 'args'),
            kwargs=require_json(kwargs, 'kwargs'), backend=self.alias, errors=[], worker_ids=[])
        self.route.submit(make_spec(result))
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result as the server knows it now; raise
        ``TaskResultDoesNotExist`` for an id it does not know (never
        enqueued, or its result retention passed), and for an id that is
        not of a task enqueued through this backend (another alias, or a
        task the server runs for something other than Django)."""
        facts = self._facts(result_id)
        try:
            spec = decode_spec(facts.record)
        except ValueError as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        if spec.get('backend') != self.alias:
            raise TaskResultDoesNotExist(result_id)
        return result_from_facts(facts, spec, task_from_spec(spec))

    def terminate(self, result_id: str) -> TaskResult:
        """Stop a task: a task that waits (READY, deferred or queued) is
        cancelled and never runs; a running one is sent SIGTERM, then SIGKILL
        after the server's grace, with its whole process group.  Either way
        it ends FAILED, its error a ``ColdocTasksProcessLookupError`` saying
        so; a task that had ended stays as it was.  Return the result as it
        is once the request is made (``refresh()`` it to see the end of a
        running task).  An id :meth:`get_result` does not know raises
        ``TaskResultDoesNotExist``, and nothing is stopped."""
        self.get_result(result_id)
        self.route.terminate(result_id)
        return self.get_result(result_id)

    def get_progress(self, result_id: str) -> Progress | None:
        """The latest progress the task reported with
        ``coldoc_tasks.progress(done, total, message, **metadata)``, as
        ``Progress(done, total, message, metadata)``, or None."""
        return self._facts(result_id).progress

    def _facts(self, result_id: str) -> Any:
        try:
            return self.route.facts(result_id)
        except ColdocTasksUnknownTaskError as exc:
            raise TaskResultDoesNotExist(result_id) from exc

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Bad ``OPTIONS`` (``coldoc_tasks.E101``) and ``QUEUES`` that the
        server does not run (``coldoc_tasks.E102``)."""
        messages = [checks.Error(f'TASKS[{self.alias!r}]: {problem}', id='coldoc_tasks.E101',
                                 hint=f'OPTIONS may set {", ".join(OPTION_NAMES)}') for problem in self.problems]
        if self.problems:
            return messages
        declared = self.route.declared_queues()
        if declared is not None and '*' not in declared:
            for name in sorted(self.queues - set(declared)):
                messages.append(checks.Error(
                    f'TASKS[{self.alias!r}]["QUEUES"] lists {name!r}, which the {self.route.name} server does not '
                    f'run (it runs {", ".join(declared)})', id='coldoc_tasks.E102',
                    hint='declare it in COLDOC_TASKS_QUEUES, e.g. "pdf:2", or "*:N" for any name'))
        return messages
