#!/usr/bin/env python3
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    """Run administrative tasks."""
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')
    # Autostart the coldoc task server only when this command serves the site
    # (see the "autostarting" section of the coldoc_tasks README).
    if len(sys.argv) > 1 and sys.argv[1] in ('runserver',):
        os.environ['COLDOC_TASKS_AUTOSTART_OPTIONS'] = 'coldoc'
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == '__main__':
    main()
