"""The Django app: ``INSTALLED_APPS = [..., 'coldoc_tasks']`` is all a site needs.

When the app is ready it registers the system checks and autostarts the
servers that the settings list and ``$COLDOC_TASKS_AUTOSTART_OPTIONS`` allows
(see :mod:`coldoc_tasks.django.autostart`).
"""

from __future__ import annotations

import logging

from django.apps import AppConfig

from .django.autostart import autostart
from .django.checks import register_checks
from .django.settings import read_settings
from .exceptions import ColdocTasksSettingsError

logger = logging.getLogger(__name__)


class ColdocTasksConfig(AppConfig):
    """The ``coldoc_tasks`` Django app."""

    name = 'coldoc_tasks'
    verbose_name = 'coldoc tasks'
    default = True

    def ready(self) -> None:
        register_checks()
        _register_task_backend_checks()
        try:
            conf = read_settings()
        except ColdocTasksSettingsError as exc:
            logger.error('coldoc_tasks settings: %s (see manage.py check)', exc)
            return
        if conf.autostart:
            autostart(conf)


def _register_task_backend_checks() -> None:
    """If ``TASKS`` uses the backend of this package, make sure Django's
    checks of task backends run (see :func:`coldoc_tasks.django.tasks.api.register_checks`)."""
    from django.conf import settings

    tasks = getattr(settings, 'TASKS', None)
    if not isinstance(tasks, dict) or not any(
            isinstance(conf, dict) and str(conf.get('BACKEND', '')).startswith('coldoc_tasks.')
            for conf in tasks.values()):
        return
    try:
        from .django.tasks.api import register_checks as register_task_checks
    except ImportError as exc:
        logger.error('TASKS uses coldoc_tasks, but %s', exc)
        return
    register_task_checks()


class ColDocTasksAppConfig(ColdocTasksConfig):
    """The same app under the name coldoc_tasks 0.2 gave its configuration
    (``INSTALLED_APPS = [..., 'coldoc_tasks.apps.ColDocTasksAppConfig']``)."""

    default = False
