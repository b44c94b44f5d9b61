"""Helpers for the tests of the status page: a real ``coldoc web`` process
and HTTP requests to it."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from tests.fixtures_coldoc import ROOT


@dataclasses.dataclass
class WebProcess:
    """A ``coldoc_tasks_cli coldoc web`` process and the URL it printed."""

    process: subprocess.Popen
    url: str

    @property
    def base(self) -> str:
        return self.url.split('?', 1)[0]

    @property
    def token(self) -> str:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query)['token'][0]

    def request(self, path: str, *, method: str = 'GET', token: str | None = 'query',
                headers: dict | None = None, body: bytes | None = None, timeout: float = 30.0):
        """``(status, headers, body)`` of a request for ``path``; ``token``:
        ``'query'``, ``'header'``, ``'bearer'``, None (none), or a str
        (a wrong one, in the query)."""
        url = self.base + path.lstrip('/')
        headers = dict(headers or {})
        if token == 'query':
            url += '?token=' + self.token
        elif token == 'header':
            headers['X-Coldoc-Token'] = self.token
        elif token == 'bearer':
            headers['Authorization'] = f'Bearer {self.token}'
        elif token is not None:
            url += '?token=' + urllib.parse.quote(token)
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def raw(self, data: bytes, timeout: float = 30.0) -> bytes:
        """Send ``data`` on a connection of its own; what comes back until
        the page closes it."""
        with socket.create_connection(self.address, timeout=timeout) as sock:
            sock.sendall(data)
            answer = b''
            while chunk := sock.recv(65536):
                answer += chunk
            return answer

    @property
    def address(self) -> tuple[str, int]:
        host, port = urllib.parse.urlsplit(self.base).netloc.rsplit(':', 1)
        return host.strip('[]'), int(port)

    def json(self, path: str = 'api/status', **kwargs) -> dict:
        status, _, body = self.request(path, **kwargs)
        assert status == 200, (status, body)
        return json.loads(body)

    def terminate(self, task_id: str, **kwargs):
        headers = {'Content-Type': 'application/json', **kwargs.pop('headers', {})}
        kwargs.setdefault('token', 'header')
        return self.request('api/terminate', method='POST', headers=headers,
                            body=json.dumps({'task_id': task_id}).encode(), **kwargs)

    #: its stderr, once stopped
    log: str = ''

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM it; return its exit status (its stderr is then :attr:`log`)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
            self.log = self.process.stderr.read()
            return code
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                with contextlib.suppress(OSError):
                    stream.close()


#: The command line, its log at level INFO on stderr (as a program that
#: embeds the page and logs would have it).
LOGGING = ('-c', 'import logging, runpy, sys; logging.basicConfig(level=logging.INFO); '
                 'sys.argv[0] = "coldoc_tasks_cli"; runpy.run_module("coldoc_tasks.cli", run_name="__main__")')


def start_web(infofile: str, *args: str, log: bool = False) -> WebProcess:
    """Start ``coldoc_tasks_cli coldoc web INFOFILE ARGS`` and read the
    first line of its output, the page's URL (the read is bounded by the
    process: it exits or prints); ``log``: with its log on stderr."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    program = LOGGING if log else ('-m', 'coldoc_tasks.cli')
    process = subprocess.Popen([sys.executable, *program, 'coldoc', 'web', infofile, *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = process.stdout.readline().strip()
    if not first.startswith('http://'):
        process.kill()
        raise AssertionError(f'coldoc web printed {first!r} first; stderr: {process.stderr.read()}')
    return WebProcess(process, first)
