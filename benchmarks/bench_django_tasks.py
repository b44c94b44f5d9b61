"""The Django task of ``python -m benchmarks.django_tasks`` (imported once
Django is set up: the ``@task`` decorator looks the backend up)."""

from __future__ import annotations

from coldoc_tasks.django.tasks.api import task

from .bench_tasks import noop


@task
def django_noop(value=None):
    """The trivial task, as a Django task."""
    return noop(value)
