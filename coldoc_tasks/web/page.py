"""The status page itself: one HTML document with its style and script
inline (package data in ``static/``), and the headers it is served with.

Inline, so that loading the page is one request, which carries the token;
and the Content-Security-Policy allows that style and that script only, by
their hashes: no other script can run in the page, whatever a task's name
or error message holds (the script inserts every text as text, too).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from importlib import resources

__all__ = ['page_html', 'page_headers', 'DATA_HEADERS', 'content_security_policy']

#: Headers of every answer: nothing cached (the data is live and may be
#: private), no content-type sniffing, no Referer (a link must not carry
#: the token away), no framing.
DATA_HEADERS = {
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
}


def _static(name: str) -> str:
    return resources.files(__package__).joinpath('static', name).read_text(encoding='utf-8')


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode('utf-8')).digest()).decode('ascii') + "'"


@functools.lru_cache(maxsize=1)
def _parts() -> tuple[str, str]:
    css, js = _static('status.css'), _static('status.js')
    if '</' in css or '</' in js:
        raise ValueError('the page\'s style and script must not contain "</"')
    policy = (f"default-src 'none'; script-src {_sha256(js)}; style-src {_sha256(css)}; connect-src 'self'; "
              "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    document = _static('index.html').replace('{{css}}', css).replace('{{js}}', js)
    return document, policy


def content_security_policy() -> str:
    """The page's Content-Security-Policy: its own style and script only."""
    return _parts()[1]


def page_html(csrf_token: str = '') -> bytes:
    """The page, with ``csrf_token`` (a Django site's) for its actions."""
    return _parts()[0].replace('{{csrf}}', html.escape(csrf_token, quote=True)).encode('utf-8')


def page_headers() -> dict[str, str]:
    """The headers of the page: :data:`DATA_HEADERS` with its own policy."""
    return dict(DATA_HEADERS, **{'Content-Security-Policy': content_security_policy()})

