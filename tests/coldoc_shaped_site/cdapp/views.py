"""Views making the calls ColDoc's views make, at import and per request."""

import base64
import logging
import os
import pickle

from django.conf import settings
from django.http import JsonResponse

import coldoc_tasks.task_utils

from . import tasks

logger = logging.getLogger(__name__)
CHOICES = []


def _fork_class_callback(f):
    logger.info('fork class %r chosen', f.fork_type)
    CHOICES.append(f.fork_type)


fork_class_default = \
    coldoc_tasks.task_utils.choose_best_fork_class(getattr(settings, 'COLDOC_TASKS_INFOFILE', None),
                                                   getattr(settings, 'COLDOC_TASKS_CELERYCONFIG', None),
                                                   callback=_fork_class_callback)


def info(request):
    do_fork = fork_class_default().can_fork()
    return JsonResponse({'pid': os.getpid(), 'fork_type': fork_class_default.fork_type, 'can_fork': do_fork,
                         'choices': CHOICES,
                         'autostarted': getattr(settings, 'COLDOC_TASKS_AUTOSTART_COLDOC_PROC', None)})


def run(request):
    pages = int(request.GET.get('pages', '3'))
    fork = fork_class_default()
    fork.run(tasks.build, fork_class_default, pages)
    fork2 = fork_class_default()
    fork2.run(tasks.page, -1)
    request.session['forks'] = base64.b85encode(pickle.dumps((fork, fork2))).decode('ascii')
    return JsonResponse({'pid': os.getpid(), 'fork_type': fork.fork_type})


def collect(request):
    forks = pickle.loads(base64.b85decode(request.session.pop('forks')))
    return JsonResponse({'pid': os.getpid(), 'results': [f.wait(timeout=60) for f in forks]})
