"""Starting and controlling Celery workers, under the module name of earlier
versions: the public names of :mod:`coldoc_tasks.celery.control`,
:mod:`coldoc_tasks.celery.daemon` and :mod:`coldoc_tasks.celery.check`."""

from .celery.check import test  # noqa: F401
from .celery.control import CHECK_TIMEOUT, broker_uri, celery_server_check, ping, shutdown, status, stop  # noqa: F401
from .celery.daemon import ENV_AUTOSTART_OPTIONS, autostart, daemon, start, tasks_daemon_autostart  # noqa: F401

__all__ = ['CHECK_TIMEOUT', 'ENV_AUTOSTART_OPTIONS', 'start', 'daemon', 'stop', 'shutdown', 'status', 'ping',
           'celery_server_check', 'autostart', 'tasks_daemon_autostart', 'test', 'broker_uri']
