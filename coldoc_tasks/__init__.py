"""coldoc_tasks: run Python callables in the background and collect their
results, or their exceptions with the original traceback.

One API, four interchangeable backends: ``nofork`` (inline), ``simple`` (one
``os.fork()`` per task), ``coldoc`` (a local task server) and ``celery``.
See :func:`coldoc_tasks.task_utils.choose_best_fork_class`.  Inside a task,
:func:`progress` reports how far it got; ``f.progress()`` reads it.
"""

from .exceptions import ColdocTasksException, ColdocTasksProcessLookupError, ColdocTasksTimeoutError
from .progress import Progress, progress

__version__ = '0.2.0'

__all__ = [
    '__version__',
    'ColdocTasksException',
    'ColdocTasksProcessLookupError',
    'ColdocTasksTimeoutError',
    'Progress',
    'progress',
]
