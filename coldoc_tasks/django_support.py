"""The Django integration under its earlier name: every public name of
:mod:`coldoc_tasks.django` (settings, autostart, the server, the fork class
for views)."""

from .django.autostart import (  # noqa: F401
    autostart,
    autostart_allowed,
    autostart_celery,
    autostart_coldoc,
    server_environment,
    start_coldoc_daemon,
    tasks_daemon_django_autostart,
)
from .django.forks import backend_unavailable_reason, get_chooser, get_fork_class, preferences, reset  # noqa: F401
from .django.server import install_database_hooks, server_main, setup_django_server  # noqa: F401
from .django.settings import (  # noqa: F401
    AUTOSTART_ENV,
    AUTOSTART_NAMES,
    AUTOSTART_OPTIONS_ENV,
    SERVER_MODULE,
    ColdocTasksSettingsError,
    TasksSettings,
    default_infofile_directory,
    parse_autostart,
    parse_pythonpath,
    parse_queues,
    parse_server_options,
    read_settings,
)

__all__ = [
    'AUTOSTART_OPTIONS_ENV', 'AUTOSTART_ENV', 'AUTOSTART_NAMES', 'ColdocTasksSettingsError', 'TasksSettings',
    'read_settings', 'autostart_allowed', 'autostart', 'autostart_coldoc', 'autostart_celery', 'start_coldoc_daemon',
    'server_environment', 'server_main', 'install_database_hooks', 'get_chooser', 'get_fork_class', 'reset',
]
