"""Tasks as ColDoc writes them: the fork class comes in as an argument."""

import os


def page(number):
    from django.conf import settings

    return {'number': number, 'pid': os.getpid(), 'ppid': os.getppid(), 'settings': settings.SETTINGS_MODULE}


def build(fork_class, pages):
    """Run one subtask per page, forking only when there is more than one."""
    forks = []
    for number in range(pages):
        subproc = fork_class(use_fork=(pages > 1))
        subproc.run(page, number)
        forks.append(subproc)
    return {'fork_type': fork_class.fork_type, 'pid': os.getpid(), 'pages': [f.wait() for f in forks]}
