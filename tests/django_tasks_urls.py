"""URLs of the test site for the Django Tasks backend over HTTP: one view
enqueues a task, another reads its result by id (``ROOT_URLCONF`` of the
test's settings; imported only in the site's processes)."""

from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse
from django.urls import path

from coldoc_tasks.django.tasks.api import TaskResultDoesNotExist
from tests import django_tasks_jobs as jobs


def enqueue(request: HttpRequest) -> JsonResponse:
    result = jobs.add.enqueue(int(request.GET['a']), int(request.GET['b']))
    return JsonResponse({'id': result.id, 'status': str(result.status), 'pid': os.getpid()})


def result(request: HttpRequest, result_id: str) -> JsonResponse:
    try:
        found = jobs.add.get_result(result_id)
    except TaskResultDoesNotExist:
        return JsonResponse({'error': 'unknown', 'pid': os.getpid()}, status=404)
    return JsonResponse({'status': str(found.status), 'pid': os.getpid(),
                         'value': found.return_value if found.is_finished else None})


urlpatterns = [
    path('enqueue/', enqueue),
    path('result/<str:result_id>/', result),
]
