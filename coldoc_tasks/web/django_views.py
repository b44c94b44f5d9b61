"""The status page in a Django site, for staff users: the views that
:mod:`.django_urls` maps.  The task server is the site's, named by its
``COLDOC_TASKS_INFOFILE`` (see :mod:`coldoc_tasks.django.settings`).

Who may see it: a logged-in user with ``is_staff``.  An anonymous visitor
of the page is sent to the login page (``settings.LOGIN_URL``); anyone else
gets 403, and so does any request for the data.  The action (terminate) is
a POST under Django's CSRF protection: the page sends the CSRF token in
the ``X-CSRFToken`` header.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django.views.decorators.http import require_POST, require_safe

from ..django.settings import read_settings
from .app import MAX_ACTION_BODY, Answer, error_answer, metrics_answer, page_answer, status_answer, terminate_answer

__all__ = ['page', 'api_status', 'metrics', 'terminate']

#: Seconds the views wait for the task server's answer.
TIMEOUT = 5.0


def _response(answer: Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
    for name, value in answer.headers.items():
        response[name] = value
    return response


def _staff_only(login_redirect: bool = False) -> Callable:
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            user = getattr(request, 'user', None)
            if user is None:
                return _response(error_answer(403, 'the status page needs django.contrib.auth '
                                                   '(its AuthenticationMiddleware)'))
            if not user.is_authenticated and login_redirect:
                return redirect_to_login(request.get_full_path())
            if not (user.is_active and user.is_staff):
                return _response(error_answer(403, 'the status page is for staff users'))
            return view(request, *args, **kwargs)
        return wrapper
    return decorate


def _infofile() -> str:
    return read_settings().infofile


@require_safe
@_staff_only(login_redirect=True)
@ensure_csrf_cookie
def page(request: HttpRequest) -> HttpResponse:
    """The page, with the CSRF token its action sends."""
    return _response(page_answer(get_token(request)))


@require_safe
@_staff_only()
def api_status(request: HttpRequest) -> HttpResponse:
    """The page's data, as JSON (see :mod:`coldoc_tasks.web.data`)."""
    return _response(status_answer(_infofile(), TIMEOUT))


@require_safe
@_staff_only()
def metrics(request: HttpRequest) -> HttpResponse:
    """The server's counters and gauges, as Prometheus text."""
    return _response(metrics_answer(_infofile(), TIMEOUT))


@require_POST
@_staff_only()
@csrf_protect
def terminate(request: HttpRequest) -> HttpResponse:
    """Terminate the task the JSON body names: ``{"task_id": ...}``."""
    if len(request.body) > MAX_ACTION_BODY:
        return _response(error_answer(413, f'the body must have at most {MAX_ACTION_BODY} bytes'))
    return _response(terminate_answer(_infofile(), request.content_type or '', request.body, TIMEOUT))
