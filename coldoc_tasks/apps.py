"""The Django app: ``INSTALLED_APPS = [..., 'coldoc_tasks']`` is all a site needs.

When the app is ready it registers the system checks and autostarts the
servers that the settings list and ``$COLDOC_TASKS_AUTOSTART_OPTIONS`` allows
(see :mod:`coldoc_tasks.django_support`).
"""

from __future__ import annotations

import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class ColdocTasksConfig(AppConfig):
    """The ``coldoc_tasks`` Django app."""

    name = 'coldoc_tasks'
    verbose_name = 'coldoc tasks'
    default = True

    def ready(self) -> None:
        from . import checks, django_support

        checks.register_checks()
        try:
            conf = django_support.read_settings()
        except django_support.ColdocTasksSettingsError as exc:
            logger.error('coldoc_tasks settings: %s (see manage.py check)', exc)
            return
        if conf.autostart:
            django_support.autostart(conf)


class ColDocTasksAppConfig(ColdocTasksConfig):
    """The same app under the name coldoc_tasks 0.2 gave its configuration
    (``INSTALLED_APPS = [..., 'coldoc_tasks.apps.ColDocTasksAppConfig']``)."""

    default = False
