"""The status page's bound on connections served at once (``coldoc web
--max-connections``): one more is answered 503 at once and closed, the
log says so once, and the page serves again once connections end."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest

from coldoc_tasks.web.standalone import MAX_CONNECTIONS
from tests.fixtures_coldoc import ROOT
from tests.helpers_coldoc import wait_until
from tests.helpers_web import WebProcess, start_web

pytestmark = pytest.mark.timeout(180)


def _answer_of(page: WebProcess, timeout: float) -> tuple[bytes, float]:
    """The whole answer to a request on a new connection, and the seconds it took."""
    started = time.monotonic()
    answer = page.raw(f'GET /api/status?token={page.token} HTTP/1.1\r\nHost: 127.0.0.1\r\n'
                      'Connection: close\r\n\r\n'.encode(),
                      timeout=timeout)
    return answer, time.monotonic() - started


def _refused(answer: bytes) -> bool:
    return answer.startswith(b'HTTP/1.1 503 ')


def test_one_connection_beyond_the_most_gets_503_at_once_and_the_page_serves_again(coldoc_server):
    # idle connections would hold their thread for request_timeout: longer than this test
    page = start_web(coldoc_server.infofile, '--request-timeout', '600', log=True)
    idle: list[socket.socket] = []
    try:
        assert page.json()['available'] is True
        idle = [socket.create_connection(page.address, timeout=30) for _ in range(MAX_CONNECTIONS)]
        # the page takes connections in order: these come after the idle ones
        for _ in range(3):
            answer, seconds = _answer_of(page, timeout=20)
            assert _refused(answer), answer[:200]
            assert seconds < 10, seconds
        head, _, body = answer.partition(b'\r\n\r\n')
        headers = dict(line.split(': ', 1) for line in head.decode('latin-1').split('\r\n')[1:])
        assert headers['Connection'] == 'close' and int(headers['Retry-After']) > 0
        assert headers['Content-Type'] == 'application/json' and int(headers['Content-Length']) == len(body)
        assert headers['X-Content-Type-Options'] == 'nosniff' and headers['Cache-Control'] == 'no-store'
        assert str(MAX_CONNECTIONS) in json.loads(body)['error']
        assert page.token.encode() not in answer
        for sock in idle:
            sock.close()
        idle = []

        def served() -> bool:
            return _answer_of(page, timeout=20)[0].startswith(b'HTTP/1.1 200 ')

        # (until the page has seen them closed, a request may still be refused: one run of refusals)
        wait_until(served, timeout=30, what='the page serving again once the idle connections closed')
    finally:
        for sock in idle:
            sock.close()
        assert page.stop() == 0
    refusals = [line for line in page.log.splitlines() if 'refuses' in line]
    assert len(refusals) == 1, refusals  # once for the run of three, not once each
    again = re.findall(r'serves again, after refusing (\d+) connection', page.log)
    assert len(again) == 1 and int(again[0]) >= 3, again


def test_the_most_connections_is_given_on_the_command_line(coldoc_server):
    page = start_web(coldoc_server.infofile, '--max-connections', '2', '--request-timeout', '600')
    idle: list[socket.socket] = []
    try:
        idle = [socket.create_connection(page.address, timeout=30) for _ in range(2)]
        answer, _ = _answer_of(page, timeout=20)
        assert _refused(answer) and b'at most 2' in answer
        idle.pop().close()
        wait_until(lambda: _answer_of(page, timeout=20)[0].startswith(b'HTTP/1.1 200 '), timeout=30,
                   what='the page serving again once one connection closed')
    finally:
        for sock in idle:
            sock.close()
        assert page.stop() == 0


@pytest.mark.parametrize('value', ['0', '-3', 'many', '2.5', ''])
def test_a_bad_number_of_connections_is_refused(coldoc_server, value):
    done = subprocess.run([sys.executable, '-m', 'coldoc_tasks.cli', 'coldoc', 'web', coldoc_server.infofile,
                           '--max-connections', value], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 2 and done.stdout == ''
    assert '--max-connections' in done.stderr and 'whole number, 1 or more' in done.stderr, done.stderr


def test_serve_refuses_a_bad_number_of_connections(coldoc_server):
    from coldoc_tasks.web.standalone import serve

    for bad in (0, '5', 2.5, True):
        with pytest.raises(ValueError, match='max_connections must be 1 or more'):
            serve(coldoc_server.infofile, max_connections=bad)
