#!/usr/bin/env python3
"""As ColDoc's manage.py: only runserver may autostart the task server."""

import os
import sys


def main():
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'cdsite.settings')
    if len(sys.argv) > 1 and sys.argv[1] in ('runserver',):
        os.environ['COLDOC_TASKS_AUTOSTART'] = 'all'
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == '__main__':
    main()
