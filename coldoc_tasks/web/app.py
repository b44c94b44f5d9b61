"""The addresses of the status page and what each answers, apart from any
web framework: :class:`StatusApp` for the standalone server (every request
authorised by the token), and the answers it shares with the Django views.

======================  ============  ==============================================
address                 method        answer
======================  ============  ==============================================
``/``                   GET, HEAD     the page (HTML, its style and script inline)
``/api/status``         GET, HEAD     the data of the page, JSON (see :mod:`.data`)
``/metrics``            GET, HEAD     the counters and gauges, Prometheus text
``/api/terminate``      POST          terminate a task: ``{"task_id": ...}``, JSON
======================  ============  ==============================================

A request naming a host the page does not answer for gets 421 (see
:mod:`.hosts`: DNS rebinding); a request without the token, or with a
wrong one, gets 403 and nothing else; an unknown address 404; another method 405.  The action is guarded
against cross-site requests: the token must come in a header (a form of
another site cannot set one, and a script of another site must first ask
a CORS preflight, which is refused), the body must be JSON, and the
``Sec-Fetch-Site`` a browser adds (else its ``Origin``) must say the same site.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from ..coldoc.infofile import PathLike
from ..exceptions import ColdocTasksUnknownTaskError
from . import data
from .hosts import host_allowed
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import prometheus_text
from .page import DATA_HEADERS, page_headers, page_html
from .token import header_token, token_matches, token_of_request

__all__ = ['Answer', 'StatusApp', 'page_answer', 'status_answer', 'metrics_answer', 'terminate_answer',
           'MAX_ACTION_BODY']

#: The largest body an action may have (bytes).
MAX_ACTION_BODY = 4096
JSON_TYPE = 'application/json'


@dataclasses.dataclass
class Answer:
    """An HTTP answer: status, body, content type and further headers."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DATA_HEADERS))


def json_answer(status: int, value: Any) -> Answer:
    return Answer(status, json.dumps(value, separators=(',', ':')).encode('utf-8'), JSON_TYPE)


def error_answer(status: int, message: str) -> Answer:
    return json_answer(status, {'error': message})


def page_answer(csrf_token: str = '') -> Answer:
    """The page (``csrf_token``: a Django site's, for its action)."""
    return Answer(200, page_html(csrf_token), 'text/html; charset=utf-8', page_headers())


def status_answer(infofile: PathLike, timeout: float) -> Answer:
    """The page's data, as JSON: 200, whether the server answered or not."""
    return json_answer(200, data.snapshot(infofile, timeout))


def metrics_answer(infofile: PathLike, timeout: float) -> Answer:
    """The Prometheus text (``coldoc_tasks_up 0`` when the server is down)."""
    return Answer(200, prometheus_text(data.snapshot(infofile, timeout)).encode('utf-8'), METRICS_TYPE)


def terminate_answer(infofile: PathLike, content_type: str, body: bytes, timeout: float) -> Answer:
    """Do what a POST to ``/api/terminate`` asks, the request being authorised."""
    if content_type.split(';')[0].strip().lower() != JSON_TYPE:
        return error_answer(415, f'the body must be {JSON_TYPE}')
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):  # (RecursionError: nested too deep)
        return error_answer(400, 'the body is not JSON, or not JSON this page reads')
    task_id = request.get('task_id') if isinstance(request, dict) else None
    if not data.valid_task_id(task_id):
        return error_answer(400, 'the body must be {"task_id": ID}, ID a task\'s id')
    try:
        state = data.terminate(infofile, task_id, timeout)
    except ColdocTasksUnknownTaskError as exc:
        return error_answer(404, str(exc))
    except data.UNAVAILABLE as exc:
        return error_answer(503, f'the task server does not answer: {exc}')
    return json_answer(200, {'task_id': task_id, 'state': state})


def same_site(headers: Mapping[str, str]) -> str | None:
    """Why a browser's request comes from another site, or None.  Its
    ``Sec-Fetch-Site``, which no page can set, must say this very origin;
    a browser that does not send it must send no ``Origin`` but this
    host's, over HTTP or HTTPS (behind a proxy).  A proxy in front may
    give another name to this host than the browser's: then only
    ``Sec-Fetch-Site`` can tell."""
    fetch_site = headers.get('Sec-Fetch-Site')
    if fetch_site is not None:
        if fetch_site != 'same-origin':
            return f'a request from another site (Sec-Fetch-Site: {fetch_site:.40})'
        return None
    origin = headers.get('Origin')
    host = headers.get('Host', '')
    if origin is not None and origin not in (f'http://{host}', f'https://{host}'):
        return f'a request from another origin ({origin:.100})'
    return None


class StatusApp:
    """The page, its data, its metrics and its action, for the server of
    ``infofile``, every request authorised by ``token``; ``bound``: the IP
    address the page listens on, whose requests must name a host it
    answers for (:func:`.hosts.host_allowed`), or None (any)."""

    GET_PATHS = ('/', '/api/status', '/metrics')
    POST_PATHS = ('/api/terminate',)

    def __init__(self, infofile: PathLike, token: str, timeout: float = 5.0, bound: str | None = None):
        self.infofile = infofile
        self.token = token
        self.timeout = timeout
        self.bound = bound

    def handle(self, method: str, target: str, headers: Mapping[str, str],
               read_body: Callable[[int], bytes]) -> Answer:
        """The answer to ``method target``; ``read_body(n)`` reads the
        request's body, of ``n`` bytes (its Content-Length)."""
        if self.bound is not None and not host_allowed(headers.get('Host'), self.bound):
            return error_answer(421, f'this page does not answer for the host {headers.get("Host")!r:.100}: '
                                     'open the address "coldoc web" printed')
        url = urllib.parse.urlsplit(target)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if not token_matches(token_of_request(query, headers), self.token):
            return error_answer(403, 'this page needs its token: open the address "coldoc web" printed')
        path = url.path
        if path in self.GET_PATHS:
            if method not in ('GET', 'HEAD'):
                return self._not_allowed('GET, HEAD')
            if path == '/':
                return page_answer()
            if path == '/api/status':
                return status_answer(self.infofile, self.timeout)
            return metrics_answer(self.infofile, self.timeout)
        if path in self.POST_PATHS:
            if method != 'POST':
                return self._not_allowed('POST')
            return self._terminate(headers, read_body)
        return error_answer(404, f'no such page: {path[:100]}')

    @staticmethod
    def _not_allowed(allowed: str) -> Answer:
        answer = error_answer(405, f'the method is not allowed here (allowed: {allowed})')
        answer.headers['Allow'] = allowed
        return answer

    def _terminate(self, headers: Mapping[str, str], read_body: Callable[[int], bytes]) -> Answer:
        if not token_matches(header_token(headers), self.token):
            return error_answer(403, 'an action needs the token in a header (X-Coldoc-Token)')
        why = same_site(headers)
        if why is not None:
            return error_answer(403, f'refused: {why}')
        try:
            length = int(headers.get('Content-Length') or 0)
        except ValueError:
            return error_answer(400, 'a bad Content-Length')
        if not 0 < length <= MAX_ACTION_BODY:
            return error_answer(413 if length > MAX_ACTION_BODY else 400,
                                f'the body must have 1 to {MAX_ACTION_BODY} bytes')
        return terminate_answer(self.infofile, headers.get('Content-Type') or '', read_body(length), self.timeout)
