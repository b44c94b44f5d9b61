"""The token of the status page: derived from the task server's key, so
that whoever can read the infofile (and so could control the server
anyway) can compute it, and nobody else; the key itself never leaves the
infofile.

A request carries it as ``?token=...``, or in a header: ``X-Coldoc-Token:
...`` or ``Authorization: Bearer ...``.  It is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

__all__ = ['page_token', 'token_of_request', 'token_matches', 'TOKEN_HEADER']

#: What the key signs to make the token: a fixed label, so that the token
#: is good for this page alone (it answers no challenge of the server).
TOKEN_LABEL = b'coldoc_tasks web status page, token v1'
TOKEN_HEADER = 'X-Coldoc-Token'


def page_token(authkey: bytes) -> str:
    """The page's token for a server whose key is ``authkey`` (64 hex digits)."""
    return hmac.new(authkey, TOKEN_LABEL, hashlib.sha256).hexdigest()


def header_token(headers: Mapping[str, str]) -> str | None:
    """The token a request carries in a header, if it does.  ``headers`` is
    looked up by name as an HTTP request's headers are (case-insensitively,
    for :class:`http.client.HTTPMessage`)."""
    token = headers.get(TOKEN_HEADER)
    if token:
        return token.strip()
    authorization = headers.get('Authorization') or ''
    scheme, _, credentials = authorization.strip().partition(' ')
    if scheme.lower() == 'bearer' and credentials.strip():
        return credentials.strip()
    return None


def token_of_request(query: Mapping[str, list[str]], headers: Mapping[str, str]) -> str | None:
    """The token of a request: from its headers, else from its query
    (``query`` as :func:`urllib.parse.parse_qs` returns it)."""
    token = header_token(headers)
    if token is not None:
        return token
    values = query.get('token') or []
    return values[0] if len(values) == 1 else None


def token_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the token, compared in constant time."""
    if not given:
        return False
    return hmac.compare_digest(given.encode('utf-8', 'replace'), expected.encode('ascii'))
