"""Schedule a computation, show it, and report which backend the site uses."""

import logging
import os
import pickle

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from coldoc_tasks.coldoc_tasks import ping
from coldoc_tasks.django_support import get_chooser, get_fork_class, read_settings

from .models import Computation
from .tasks import factorize

logger = logging.getLogger(__name__)


@require_http_methods(['GET', 'POST'])
def index(request: HttpRequest) -> HttpResponse:
    """The form and the latest computations; a POST schedules one."""
    if request.method == 'POST':
        try:
            number = int(request.POST['number'])
            if number < 1:
                raise ValueError(number)
        except (KeyError, ValueError):
            return HttpResponse('number: a positive integer, please', status=400)
        computation = Computation.objects.create(number=number, web_pid=os.getpid())
        f = get_fork_class()()
        f.run(factorize, computation.pk)
        try:
            computation.fork = pickle.dumps(f)
        except Exception:  # not every backend's fork objects travel to other processes
            logger.debug('fork object of %s not picklable', f.fork_type, exc_info=True)
        computation.backend = f.fork_type
        computation.save(update_fields=['fork', 'backend'])
        return redirect('detail', pk=computation.pk)
    return render(request, 'reports/index.html', {'computations': Computation.objects.all()[:20]})


def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A computation; ``?wait=SECONDS`` first waits for its task (in any web
    process, through the pickled fork object); ``?format=json`` for programs."""
    computation = get_object_or_404(Computation, pk=pk)
    error = ''
    if 'wait' in request.GET and computation.state == 'scheduled' and computation.fork:
        try:
            f = pickle.loads(computation.fork)
            f.wait(timeout=min(float(request.GET['wait'] or 10), 60))
        except Exception as exc:
            error = f'{type(exc).__name__}: {exc}'
        computation.refresh_from_db()
    data = {'id': computation.pk, 'number': computation.number, 'state': computation.state,
            'factors': computation.factors, 'backend': computation.backend, 'web_pid': computation.web_pid,
            'worker_pid': computation.worker_pid, 'error': error}
    if request.GET.get('format') == 'json':
        return JsonResponse(data)
    return render(request, 'reports/detail.html', {'c': data})


def status(request: HttpRequest) -> JsonResponse:
    """Which backend this web process uses now, and the coldoc server it sees."""
    chooser = get_chooser()
    answer = ping(read_settings().infofile)
    return JsonResponse({'web_pid': os.getpid(), 'backend': chooser.fork_type,
                         'coldoc_server_pid': answer and answer['pid']})
