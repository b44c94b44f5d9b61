"""The standalone status page against what a client may send that the
other tests of the page do not: a body it does not read, a body in
chunks, a client that resets its connection, the page's own action
behind an HTTPS proxy."""

from __future__ import annotations

import json
import re
import socket
import struct

import pytest

from tests.helpers_coldoc import wait_until
from tests.helpers_web import start_web

pytestmark = pytest.mark.timeout(180)


def _answers(received: bytes) -> list[bytes]:
    """The status lines of the answers in what came back on a connection."""
    return re.findall(rb'HTTP/1\.[01] \d{3} [A-Za-z ]*', received)


def test_a_body_the_page_does_not_read_is_not_taken_for_a_request(web):
    # a second request hidden in the body of the first: behind a proxy that
    # forwards the first as one request, the page must not answer two
    hidden = b'GET /api/status?token=' + web.token.encode() + b' HTTP/1.1\r\nHost: 127.0.0.1\r\n' \
             b'Connection: close\r\n\r\n'
    for method in ('GET', 'HEAD', 'OPTIONS', 'DELETE'):
        received = web.raw(f'{method} /api/status?token={web.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                           f'Content-Length: {len(hidden)}\r\n\r\n'.encode() + hidden, timeout=30)
        assert len(_answers(received)) == 1, (method, _answers(received))
        assert b'\r\nConnection: close\r\n' in received, method
    # a body in chunks, with a Content-Length that says otherwise
    body = json.dumps({'task_id': 'x' * 16}).encode()
    chunked = f'{len(body):x}\r\n'.encode() + body + b'\r\n0\r\n\r\n'
    for length in (len(body), None):
        received = web.raw(b'POST /api/terminate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Coldoc-Token: '
                           + web.token.encode() + b'\r\nContent-Type: application/json\r\n'
                           + (f'Content-Length: {length}\r\n'.encode() if length else b'')
                           + b'Transfer-Encoding: chunked\r\n\r\n' + chunked + hidden, timeout=30)
        assert _answers(received) == [b'HTTP/1.1 501 Not Implemented'], received[:300]
        assert b'Transfer-Encoding' in received.partition(b'\r\n\r\n')[2]
    # two lengths: which one a proxy in front took is unknown
    received = web.raw(b'POST /api/terminate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Coldoc-Token: ' + web.token.encode()
                       + b'\r\nContent-Type: application/json\r\nContent-Length: ' + str(len(body)).encode()
                       + b'\r\nContent-Length: 0\r\n\r\n' + body + hidden, timeout=30)
    assert _answers(received) == [b'HTTP/1.1 400 Bad Request'], received[:300]
    assert b'more than one Content-Length' in received
    # a body of 0 bytes, or a POST's that is read, leaves the connection open
    with socket.create_connection(web.address, timeout=30) as sock:
        for _ in range(2):
            sock.sendall(f'GET /api/status?token={web.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                         'Content-Length: 0\r\n\r\n'.encode())
            head = b''
            while b'\r\n\r\n' not in head:
                chunk = sock.recv(65536)
                assert chunk, 'the page closed the connection'
                head += chunk
            assert head.startswith(b'HTTP/1.1 200 ') and b'Connection: close' not in head
            length = int(head.split(b'Content-Length: ')[1].split(b'\r\n')[0])
            rest = head.partition(b'\r\n\r\n')[2]
            while len(rest) < length:
                rest += sock.recv(65536)
    assert web.json()['available'] is True


def test_a_client_that_resets_its_connection_leaves_no_traceback(coldoc_server):
    page = start_web(coldoc_server.infofile, log=True)
    try:
        for path in ('api/status', '', 'metrics') * 4:
            sock = socket.create_connection(page.address, timeout=30)
            sock.sendall(f'GET /{path}?token={page.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'.encode())
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            sock.close()  # a reset: the page's answer has nowhere to go
        wait_until(lambda: page.json()['available'] is True, timeout=30, what='the page answering')
    finally:
        assert page.stop() == 0
    assert 'Traceback' not in page.log and 'Exception occurred' not in page.log, page.log[-3000:]


def test_the_action_of_the_page_behind_an_https_proxy_is_accepted(web):
    port = web.address[1]
    unknown = '0' * 16  # 404: the request passed every guard

    def terminate(**headers: str) -> int:
        return web.terminate(unknown, headers=headers)[0]

    # a browser's request, its origin the proxy's (HTTPS, another name)
    assert terminate(Origin='https://tasks.example.org', **{'Sec-Fetch-Site': 'same-origin'}) == 404
    # an older browser: no Sec-Fetch-Site, the origin this host over HTTPS
    assert terminate(Origin=f'https://127.0.0.1:{port}') == 404
    assert terminate(Origin=f'http://127.0.0.1:{port}') == 404
    # still refused: another site, whatever the origin says
    for headers in ({'Sec-Fetch-Site': 'cross-site', 'Origin': f'http://127.0.0.1:{port}'},
                    {'Sec-Fetch-Site': 'same-site'}, {'Sec-Fetch-Site': 'none'},
                    {'Origin': 'https://evil.example'}, {'Origin': f'https://127.0.0.1:{port}.evil.example'},
                    {'Origin': 'null'}, {'Origin': f'ftp://127.0.0.1:{port}'}):
        assert terminate(**headers) == 403, headers


def test_a_request_head_over_its_byte_budget_is_refused(web):
    # under the standard parser's limits (100 lines, 64 KiB each), over the page's for the whole head
    padding = 'x' * 1000
    head = ''.join(f'X-Pad-{i}: {padding}\r\n' for i in range(90))
    received = web.raw(f'GET /api/status?token={web.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n'.encode(),
                       timeout=30)
    assert _answers(received) == [b'HTTP/1.1 431 Request Header Fields Too Large'], received[:200]
    assert b'\r\nConnection: close\r\n' in received and web.token.encode() not in received
    # a head within the budget, on a connection of its own, is answered
    head = ''.join(f'X-Pad-{i}: {padding}\r\n' for i in range(40))
    received = web.raw(f'GET /api/status?token={web.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}'
                       f'Connection: close\r\n\r\n'.encode(), timeout=30)
    assert _answers(received) == [b'HTTP/1.1 200 OK'], received[:200]
