"""The ``celery`` backend under the name the seed and coldoc_tasks 0.2 use:
every public name of :mod:`coldoc_tasks.celery` (the fork class, the app,
starting and controlling workers, 0.2's calls), and the exceptions.  Pickles
made by earlier versions name the fork class here, so it stays."""

from .celery.app import ENV_CELERYCONFIG, app_for, load_celeryconfig, make_app, resolve_celeryconfig, setup_app  # noqa: F401
from .celery.check import test  # noqa: F401
from .celery.control import CHECK_TIMEOUT, broker_uri, celery_server_check, ping, shutdown, status, stop  # noqa: F401
from .celery.daemon import autostart, daemon, start, tasks_daemon_autostart  # noqa: F401
from .celery.fork import CeleryFork, CeleryTimeoutError, fork_class, fork_class_for, get_fork_class  # noqa: F401
from .celery.worker import RUN_TASK_NAME, TERMINATE_COMMAND, CeleryTaskPool, execute, run_pickled_call  # noqa: F401
from .exceptions import *  # noqa: F401,F403
from .exceptions import __all__ as _exceptions

__all__ = [
    'CeleryFork', 'CeleryTaskPool', 'CeleryTimeoutError', 'RUN_TASK_NAME', 'TERMINATE_COMMAND', 'ENV_CELERYCONFIG',
    'CHECK_TIMEOUT', 'fork_class', 'fork_class_for', 'get_fork_class', 'load_celeryconfig', 'make_app', 'setup_app',
    'app_for', 'start', 'daemon', 'stop', 'status', 'ping', 'autostart', 'test',
    'shutdown', 'celery_server_check', 'tasks_daemon_autostart', *_exceptions,
]
