"""Django system checks of the ``COLDOC_TASKS_*`` settings (``manage.py check``).

==========================  ===========================================================
id                          problem
==========================  ===========================================================
``coldoc_tasks.E001``       ``COLDOC_TASKS_AUTOSTART`` lists an unknown name, or has a wrong type
``coldoc_tasks.E002``       ``COLDOC_TASKS_CELERYCONFIG`` is missing, not a file or unreadable
``coldoc_tasks.E003``       ``COLDOC_TASKS_AUTOSTART`` lists celery but no celeryconfig is set
``coldoc_tasks.E004``       the directory of the infofile, socket or logfile cannot hold it
``coldoc_tasks.E005``       the socket path is too long for an AF_UNIX socket
``coldoc_tasks.E006``       a setting has a wrong type (paths: ``str`` or ``pathlib.Path``)
``coldoc_tasks.E007``       a server option (``COLDOC_TASKS_RESULT_RETENTION`` ...) is out of its range
``coldoc_tasks.E008``       ``COLDOC_TASKS_QUEUES`` has a bad queue spec
``coldoc_tasks.W001``       a ``COLDOC_TASKS_PYTHONPATH`` entry is not a directory
``coldoc_tasks.W002``       autostart is set, but ``COLDOC_TASKS_PYTHONPATH`` is not
==========================  ===========================================================
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core import checks

from .settings import ColdocTasksSettingsError, parse_autostart, parse_pythonpath, parse_queues, parse_server_options

#: Longest AF_UNIX socket path (sun_path is 108 bytes on Linux, with a final NUL).
MAX_SOCKET_PATH = 107
_PATH_SETTINGS = ('COLDOC_TASKS_INFOFILE', 'COLDOC_TASKS_SOCKET', 'COLDOC_TASKS_LOGFILE', 'COLDOC_TASKS_CELERYCONFIG')


def _error(message: str, number: int, hint: str | None = None) -> checks.CheckMessage:
    return checks.Error(message, hint=hint, id=f'coldoc_tasks.E{number:03d}')


def _warning(message: str, number: int, hint: str | None = None) -> checks.CheckMessage:
    return checks.Warning(message, hint=hint, id=f'coldoc_tasks.W{number:03d}')


def _directory_problem(path: str) -> str | None:
    """Why the directory of ``path`` cannot hold a new file, or None."""
    directory = os.path.dirname(path) or '.'
    existing = directory
    while not os.path.exists(existing):  # the server may create missing directories
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        return f'{existing} is not a directory'
    if not os.access(existing, os.W_OK | os.X_OK):
        return f'{existing} is not writable by this user'
    return None


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check the ``COLDOC_TASKS_*`` settings; see the module for the ids."""
    errors: list[checks.CheckMessage] = []
    paths: dict[str, str] = {}
    for name in _PATH_SETTINGS:
        value = getattr(settings, name, None)
        if value is None or value == '':
            continue
        if not isinstance(value, (str, os.PathLike)):
            errors.append(_error(f'{name} must be a str or a pathlib.Path, not {type(value).__name__}', 6))
            continue
        paths[name] = os.path.abspath(os.fspath(value))
    password = getattr(settings, 'COLDOC_TASKS_PASSWORD', None)
    if password is not None and not isinstance(password, (str, bytes)):
        errors.append(_error(f'COLDOC_TASKS_PASSWORD must be a str or bytes, not {type(password).__name__}', 6))

    autostart: tuple[str, ...] = ()
    try:
        autostart = parse_autostart(getattr(settings, 'COLDOC_TASKS_AUTOSTART', None),
                                    paths.get('COLDOC_TASKS_CELERYCONFIG'))
    except ColdocTasksSettingsError as exc:
        errors.append(_error(str(exc), 1, hint='write e.g. COLDOC_TASKS_AUTOSTART = "coldoc" or "coldoc,celery"'))

    celeryconfig = paths.get('COLDOC_TASKS_CELERYCONFIG')
    if celeryconfig is not None:
        if not os.path.isfile(celeryconfig):
            errors.append(_error(f'COLDOC_TASKS_CELERYCONFIG: {celeryconfig} does not exist or is not a file', 2))
        elif not os.access(celeryconfig, os.R_OK):
            errors.append(_error(f'COLDOC_TASKS_CELERYCONFIG: {celeryconfig} is not readable by this user', 2))
    elif 'celery' in autostart:
        errors.append(_error('COLDOC_TASKS_AUTOSTART lists celery, but COLDOC_TASKS_CELERYCONFIG is not set', 3,
                             hint='set COLDOC_TASKS_CELERYCONFIG to the path of your celeryconfig.py'))

    for name in ('COLDOC_TASKS_INFOFILE', 'COLDOC_TASKS_SOCKET', 'COLDOC_TASKS_LOGFILE'):
        if name in paths:
            problem = _directory_problem(paths[name])
            if problem:
                errors.append(_error(f'{name}: {paths[name]} cannot be created: {problem}', 4))
    socket_path = paths.get('COLDOC_TASKS_SOCKET')
    if socket_path is not None and len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        errors.append(_error(f'COLDOC_TASKS_SOCKET is {len(os.fsencode(socket_path))} bytes long, over the '
                             f'{MAX_SOCKET_PATH} bytes an AF_UNIX socket path may have', 5,
                             hint='choose a shorter path, or leave it unset for a temporary one'))

    try:
        parse_server_options(settings)
    except ColdocTasksSettingsError as exc:
        errors.append(_error(str(exc), 7, hint='remove the setting to use the default'))
    try:
        parse_queues(getattr(settings, 'COLDOC_TASKS_QUEUES', None))
    except ColdocTasksSettingsError as exc:
        errors.append(_error(str(exc), 8, hint='write e.g. COLDOC_TASKS_QUEUES = ["default:2", "pdf:1:fresh"]'))

    try:
        pythonpath = parse_pythonpath(getattr(settings, 'COLDOC_TASKS_PYTHONPATH', None))
    except ColdocTasksSettingsError as exc:
        errors.append(_error(str(exc), 6))
        pythonpath = None
    for entry in pythonpath or ():
        if not os.path.isdir(entry):
            errors.append(_warning(f'COLDOC_TASKS_PYTHONPATH: {entry} is not a directory', 1))
    if 'coldoc' in autostart and pythonpath == ():
        errors.append(_warning('COLDOC_TASKS_AUTOSTART lists coldoc but COLDOC_TASKS_PYTHONPATH is not set: the '
                               'server may not find the code of your tasks', 2,
                               hint='set COLDOC_TASKS_PYTHONPATH = BASE_DIR'))
    return errors


def register_checks() -> None:
    """Register :func:`check_settings` (once) with Django's check framework."""
    checks.register(check_settings, 'coldoc_tasks')
