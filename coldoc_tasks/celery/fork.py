"""The ``celery`` backend: tasks run on Celery workers, through a real broker.

Every call travels as one generic Celery task whose only argument is the
pickled call and whose result is the pickled outcome::

    client (this module)                    broker           worker pool process (.worker)
    run(cmd, *args)
      dumps_call -> bytes --send_task----->  queue  -------> run_pickled_call(bytes)
                                                               claim the task id (.claims)
                                                               call_capturing(cmd, ...)
    wait()                                                     dumps_outcome -> bytes
      AsyncResult.get <---- result backend (Redis) <---------/
      loads_outcome: the value, or the exception with its remote traceback

So any picklable callable runs, and a failure arrives with its type, args and
traceback as on every other backend.  The app uses pickle serialization: the
broker and the result backend must be trusted, as anybody who can write to
them can run code on the workers.

Nested tasks: a task that waits, with or without a timeout, for a subtask
that no worker has started yet claims that subtask and runs it in a child
process of its own (:mod:`.waiter`).  A waiting task therefore never
sits on a pool slot while the work it waits for sits in the queue behind it,
and a chain of nested tasks completes however small the pool is; the wait
still times out at its deadline while the subtask goes on, and the subtask's
outcome is stored as if a worker had run it.  (Celery's own advice is never to
wait inside a task; this is why waiting is safe here, and ``get`` is called
with ``disable_sync_subtasks=False``.)

A wait never hangs on a task that cannot finish: while no result comes, it
looks every :attr:`CeleryFork.liveness_interval` seconds at the task's records
(:mod:`.claims`).  No result and no claim, when the fork object was sent
longer ago than the results are kept (``result_expires``; the time of
sending travels with a pickled fork object): the result expired,
:class:`ColdocTasksUnknownTaskError`.  Sooner, the task is still queued.  A claim by a process of
this machine that is gone (its worker's main process was killed, taking its
pool with it, and Celery stored nothing): :class:`ColdocTasksProcessLookupError`.
A process on another machine cannot be checked this way.

The backend is split by concern: :mod:`.app` (the celeryconfig and the
app), :mod:`.worker` (what runs in the worker), :mod:`.claims` (who runs a
task), :mod:`.waiter` (a subtask run by its waiting task), :mod:`.control`
(asking and stopping workers), :mod:`.daemon` (starting them), :mod:`.check`
(the self-check), :mod:`.cli`, and this module, the fork class.  Every public
name of those is importable from :mod:`coldoc_tasks.celery_tasks` as well.
"""

from __future__ import annotations

import copyreg
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

import celery
import celery.exceptions
import kombu.exceptions
from celery import states
from celery.backends.asynchronous import Drainer

from ..base import ForkBase
from ..durations import format_seconds
from ..exceptions import (
    ColdocTasksBackendUnavailableError,
    ColdocTasksConnectionError,
    ColdocTasksProcessLookupError,
    ColdocTasksTimeoutError,
    ColdocTasksUnknownTaskError,
    ColdocTasksUsageError,
)
from ..outcome import Outcome, dumps_call, loads_outcome
from ..progress import Progress
from .app import app_for, resolve_celeryconfig, setup_app
from .claims import Claim, claim, records, results_expire_after, sent_recently
from .control import CHECK_TIMEOUT, broker_uri, ping
from .progress import read_progress
from .waiter import local_run, mark_terminated, run_here_if_unclaimed, terminate_elsewhere
from .worker import RUN_TASK_NAME, TERMINATE_COMMAND, in_worker_slot, serving

__all__ = ['CeleryFork', 'CeleryTimeoutError', 'fork_class', 'fork_class_for', 'get_fork_class']

logger = logging.getLogger(__name__)

#: Seconds a waiter still waits for the result of a task whose process is gone.
_LAST_LOOK = 1.0


class CeleryTimeoutError(ColdocTasksTimeoutError, celery.exceptions.TimeoutError):
    """``wait`` gave up after its timeout; also a Celery ``TimeoutError``, so
    code written for Celery's ``AsyncResult.get`` keeps catching it."""


class _DeadlineDrainer(Drainer):
    """Celery's result drainer, but waking up at the caller's deadline: the
    default one waits in steps of one second, so ``wait(timeout=0.2)`` would
    give up only after a second."""

    def drain_events_until(self, p: Any, timeout: float | None = None, interval: float = 1, on_interval: Any = None,
                           wait: Any = None) -> Any:
        wait = wait or self.result_consumer.drain_events
        deadline = None if timeout is None else time.monotonic() + timeout
        while not p.ready:
            step = interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                step = min(interval, remaining)
            try:
                yield self.wait_for(p, wait, timeout=step)
            except TimeoutError:
                pass
            if on_interval:
                on_interval()


def _precise_timeouts(backend: Any) -> None:
    consumer = getattr(backend, 'result_consumer', None)
    if consumer is not None and type(getattr(consumer, 'drainer', None)) is Drainer:
        consumer.drainer = _DeadlineDrainer(consumer)


# -- the fork class ---------------------------------------------------------------------


class CeleryFork(ForkBase):
    """Run each task on a Celery worker.

    The full contract of :class:`~coldoc_tasks.base.ForkBase`.  Besides its
    arguments: ``celeryconfig``, the path of a celeryconfig file (default: the
    class's own, for a class from :func:`fork_class_for`, else the
    environment variable ``COLDOC_TASKS_CELERYCONFIG``), or ``app`` (also
    ``celery_app``, 0.2's name), a Celery app (set up with :func:`setup_app`).
    ``queue`` names the Celery queue.

    Positional arguments follow the order of every fork class, ``(use_fork,
    timeout, queue, celeryconfig, app)``; but a path (a str or
    ``os.PathLike``) as the second one, or a Celery app as the third, means
    coldoc_tasks 0.2's order, ``(use_fork, celeryconfig, celery_app,
    timeout, queue)``.

    ``task_id`` is Celery's task id.  A pickled copy can ``wait`` in any
    process that reaches the same broker and result backend.

    ``wait_async`` has no socket of ours to wait on (the result backend is
    Celery's): it runs the blocking wait in a thread of the event loop's
    default executor, one thread per waiting coroutine.
    """

    fork_type = 'celery'
    #: The outcome is in the result backend, which every process can reach.
    shared_wait = True
    #: The call travels to a worker through the broker, pickled.
    pickles_arguments = True
    #: Seconds between two looks, while waiting, at why a task has no result yet.
    liveness_interval: ClassVar[float] = 2.0
    #: The celeryconfig of a class bound to one by :func:`fork_class_for`.
    celeryconfig: ClassVar[str | None] = None
    #: The task has ended and its last progress report was read.
    _progress_final = False

    def __init__(self, use_fork: bool = True, timeout: float | None = None, queue: str | bool | None = None,
                 celeryconfig: str | os.PathLike | None = None, app: celery.Celery | None = None, *,
                 celery_app: celery.Celery | None = None):
        if isinstance(timeout, (str, os.PathLike)) or isinstance(queue, celery.Celery):
            timeout, queue, celeryconfig, app = celeryconfig, app, timeout, queue  # 0.2's positional order
        if celery_app is not None:
            if app is not None and app is not celery_app:
                raise ColdocTasksUsageError('give the Celery app as app or as celery_app, not both')
            app = celery_app
        super().__init__(use_fork=use_fork, timeout=timeout, queue=queue)
        self._given_app = app
        self._celeryconfig = None if app is not None else resolve_celeryconfig(celeryconfig or self.celeryconfig)
        if app is not None:
            setup_app(app)
        elif use_fork:
            app_for(self._celeryconfig)  # a bad celeryconfig is reported here, not at run()
        self._call_data: bytes | None = None
        self._run_here_lock = threading.Lock()
        #: when run() sent the task (time.time(), for any process the object is pickled to)
        self._sent_at: float | None = None

    @property
    def app(self) -> celery.Celery:
        """The Celery app this fork object uses."""
        if self._given_app is not None:
            return self._given_app
        return app_for(self._celeryconfig)

    def _submit(self, cmd: Callable, args: tuple, kwargs: dict) -> str:
        data = dumps_call(cmd, args, kwargs)
        options: dict[str, Any] = {}
        if self.queue not in (None, True, False, ''):
            options['queue'] = str(self.queue)
        app = self.app
        task_id = str(uuid.uuid4())
        self._sent_at = time.time()
        try:
            result = app.send_task(RUN_TASK_NAME, args=(data,), serializer='pickle', shadow=self.cmd_name,
                                   argsrepr=f'<pickled call of {len(data)} bytes>', task_id=task_id, **options)
        except kombu.exceptions.OperationalError as exc:
            raise ColdocTasksConnectionError(f'cannot send task {self.cmd_name} to the Celery broker: {exc}') from exc
        self._call_data = data
        logger.debug('task %s (%s) sent to Celery', result.id, self.cmd_name)
        return result.id

    def _collect(self, timeout: float | None) -> Outcome:
        local = local_run(self.task_id)
        if local is None and in_worker_slot() and self._call_data is not None:
            local = self._run_here_if_unclaimed()
        if local is not None:
            return local.collect(timeout, lambda: self._timeout_error(timeout))
        app = self.app
        _precise_timeouts(app.backend)
        result = app.AsyncResult(self.task_id)  # made here: Celery's backends are per thread
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Block on the result, but look every liveness_interval seconds at
            # why it is not there: a result that expired, or a process that
            # vanished without Celery noticing, would otherwise be waited for
            # until the timeout (or for ever).
            step = self.liveness_interval
            if deadline is not None:
                step = min(step, max(0.0, deadline - time.monotonic()))
            try:
                result.get(timeout=step, propagate=False, disable_sync_subtasks=False)
                break
            except celery.exceptions.TimeoutError:
                pass
            lost = self._why_no_result(app, result)
            if lost is not None:
                return lost
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout_error(timeout) from None
        return self._outcome_of(result.state, result.result, result.traceback)

    def _why_no_result(self, app: celery.Celery, result: Any) -> Outcome | None:
        """Look at the records of a task with no result yet (see
        :mod:`.celery_claims`): None if it is queued or running, an outcome
        if its process is gone; raise :class:`ColdocTasksUnknownTaskError` if
        its result expired or it was never sent."""
        found = records(app.backend, self.task_id)
        if found is None or result.ready():
            return None  # no Redis: nothing to tell
        marked, owner = found
        what = f'task {self.task_id} ({self.cmd_name})'
        if owner is None:
            if marked or sent_recently(app.backend, getattr(self, '_sent_at', None)):  # None: an older pickle
                return None  # still in its queue
            raise ColdocTasksUnknownTaskError(
                f'{what} is unknown to the Celery result backend: its result expired (result_expires is '
                f'{results_expire_after(app.backend)} s) or it was never sent')
        if not owner.process_gone():
            return None
        # A process that stored its result and exited, or whose loss Celery is
        # about to report (naming the signal), gets a last short wait.
        try:
            result.get(timeout=_LAST_LOOK, propagate=False, disable_sync_subtasks=False)
            return None
        except celery.exceptions.TimeoutError:
            pass
        logger.info('%s: %s, which claimed it, is gone', what, owner.describe())
        return Outcome(exception=ColdocTasksProcessLookupError(
            f'{what}: {owner.describe()}, which was running it, is gone and stored no result'))

    def _run_here_if_unclaimed(self):
        with self._run_here_lock:
            data, self._call_data = self._call_data, None
            if data is None:
                return local_run(self.task_id)  # another thread got here first
            return run_here_if_unclaimed(self.app, self.task_id, self.cmd_name or '', data, self._outcome_of)

    def _outcome_of(self, state: str, value: Any, remote_traceback: str | None) -> Outcome:
        what = f'task {self.task_id} ({self.cmd_name})'
        if state == states.SUCCESS:
            return loads_outcome(value) if isinstance(value, bytes) else Outcome(value=value)
        if state == states.REVOKED:
            reason = str(value) or 'revoked'
            return Outcome(exception=ColdocTasksProcessLookupError(f'{what} was terminated (Celery: {reason})'))
        if state == states.FAILURE:
            if isinstance(value, celery.exceptions.WorkerLostError):
                return Outcome(exception=ColdocTasksProcessLookupError(
                    f'{what}: the Celery worker process running it was lost: {value}'))
            if isinstance(value, celery.exceptions.TimeLimitExceeded):
                return Outcome(exception=ColdocTasksProcessLookupError(
                    f'{what} was killed by Celery: time limit exceeded ({value})'))
            lines = remote_traceback.splitlines(keepends=True) if remote_traceback else None
            return Outcome(exception=value, traceback=lines)
        return Outcome(exception=ColdocTasksProcessLookupError(f'{what} ended in the unexpected Celery state {state}'))

    def _terminate(self) -> None:
        app = self.app
        what = f'task {self.task_id} ({self.cmd_name})'
        claimed = claim(app.backend, self.task_id, Claim('terminated'))
        if claimed:
            app.backend.mark_as_revoked(self.task_id, reason='terminated before it started')
            logger.info('%s terminated before it started', what)
            return
        local = local_run(self.task_id)
        if local is not None:  # run by a child of this process
            mark_terminated(app.backend, self.task_id)
            local.terminate(self.terminate_grace)
            return
        found = records(app.backend, self.task_id) if claimed is False else None
        owner = found[1] if found is not None else None
        if owner is not None and owner.role == 'waiter':  # run by a child of the task that waits for it
            mark_terminated(app.backend, self.task_id)
            if terminate_elsewhere(owner, self.terminate_grace):
                logger.info('%s: %s terminated', what, owner.describe())
            else:
                logger.warning('%s is run by %s, on another machine: it cannot be stopped from here, '
                               'and is only reported as terminated', what, owner.describe())
            return
        if claimed is None:
            app.control.revoke(self.task_id)
        app.control.broadcast(TERMINATE_COMMAND, arguments={'task_id': self.task_id, 'grace': self.terminate_grace})
        logger.info('%s: termination requested', what)

    def _read_progress(self) -> Progress | None:
        # One round trip to the result backend (one more, once, after the end).
        if self._progress_final:
            return None
        try:
            latest, self._progress_final = read_progress(self.app.backend, self.task_id)
        except Exception as exc:  # a broken backend must not break a progress bar
            logger.debug('task %s: cannot read its progress: %s', self.task_id, exc)
            return None
        return latest

    def _timeout_error(self, timeout: float | None) -> ColdocTasksTimeoutError:
        return CeleryTimeoutError(
            f'task {self.task_id} ({self.cmd_name}) did not finish within {format_seconds(timeout)} s')

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state['_call_data'] = None
        del state['_run_here_lock']
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._run_here_lock = threading.Lock()


class _BoundForkMeta(type):
    """Metaclass of the fork classes bound to one celeryconfig, so that pickle
    sends such a class as the path of its celeryconfig (see copyreg below)."""


_bound_classes: dict[str, type[CeleryFork]] = {}
_bound_classes_lock = threading.Lock()


def fork_class_for(celeryconfig: str | os.PathLike) -> type[CeleryFork]:
    """A subclass of :class:`CeleryFork` whose instances use ``celeryconfig``:
    ready to use with no arguments, and picklable (as the path)."""
    path = os.path.abspath(os.fspath(celeryconfig))
    with _bound_classes_lock:
        cls = _bound_classes.get(path)
        if cls is None:
            cls = _BoundForkMeta('CeleryFork', (CeleryFork,), {
                '__module__': __name__, '__qualname__': 'CeleryFork', 'celeryconfig': path,
                '__doc__': f'{CeleryFork.__doc__}\n    Bound to the celeryconfig {path}.\n'})
            _bound_classes[path] = cls
    return cls


copyreg.pickle(_BoundForkMeta, lambda cls: (fork_class_for, (cls.celeryconfig,)))

fork_class = CeleryFork


def get_fork_class(infofile: object = None, celeryconfig: str | os.PathLike | None = None) -> type[CeleryFork]:
    """The ``celery`` fork class for ``celeryconfig`` (default: the
    environment variable ``COLDOC_TASKS_CELERYCONFIG``), if its broker can be
    reached and a worker answers a ping; else raise
    :class:`ColdocTasksBackendUnavailableError` saying why.  Takes about
    :data:`CHECK_TIMEOUT` seconds at most."""
    try:
        path = resolve_celeryconfig(celeryconfig)
    except ColdocTasksUsageError as exc:
        raise ColdocTasksBackendUnavailableError(str(exc)) from None
    if serving(path):
        return fork_class_for(path)  # a task of a worker of this celeryconfig: a worker answers
    app = app_for(path, reload_if_changed=True)
    if not ping(app=app, timeout=CHECK_TIMEOUT, limit=1):
        raise ColdocTasksBackendUnavailableError(
            f'no Celery worker answers a ping within {CHECK_TIMEOUT} s on {broker_uri(app)}')
    return fork_class_for(path)

