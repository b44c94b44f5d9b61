"""The status page's addresses for a Django site::

    urlpatterns = [..., path('tasks/', include('coldoc_tasks.web.django_urls'))]

serves the page at ``tasks/``, its data at ``tasks/api/status``, the
Prometheus text at ``tasks/metrics`` and the action at
``tasks/api/terminate``, to staff users (see :mod:`.django_views`).
"""

from django.urls import path

from . import django_views

app_name = 'coldoc_tasks_web'

urlpatterns = [
    path('', django_views.page, name='page'),
    path('api/status', django_views.api_status, name='status'),
    path('metrics', django_views.metrics, name='metrics'),
    path('api/terminate', django_views.terminate, name='terminate'),
]
