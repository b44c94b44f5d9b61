"""``coldoc_tasks_cli coldoc web``: the status page on a standard-library
HTTP server of its own, a client of the task server of an infofile.

It binds to the loopback interface unless told otherwise; prints the
page's address, with its token, as its first line of output; and serves,
one thread per connection, until SIGINT or SIGTERM, when it exits with
status 0.  A client that misbehaves holds only its own thread, and that
for at most ``request_timeout`` seconds: a request (its head and its body)
must come whole within them, however slowly it trickles in.  Errors are
JSON with the page's security headers, even for a request that cannot be
parsed; the log never holds the token nor a control character a client
sent.

At most ``max_connections`` connections are served at once (an idle
one holds its thread until ``request_timeout``): one more is answered at
once with 503 and closed, so that a client opening many connections gets
no more threads; the log says so once for each run of refusals.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import logging
import re
import signal
import socket
import sys
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TextIO

from .. import __version__
from ..coldoc.infofile import PathLike, read_infofile
from .app import Answer, StatusApp, error_answer
from .token import page_token

__all__ = ['StatusServer', 'parse_bind', 'is_loopback', 'serve', 'REQUEST_TIMEOUT', 'MAX_CONNECTIONS']

logger = logging.getLogger(__name__)

#: Seconds a request may take to come (and a connection may stay idle), by default.
REQUEST_TIMEOUT = 30.0
#: Connections served at once, by default.
MAX_CONNECTIONS = 64
#: Bytes the head of a request (its request line and headers) may hold.
MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HOST = '127.0.0.1'
_CONTROL = {code: f'\\x{code:02x}' for code in (*range(32), 127)}
_QUERY_TOKEN = re.compile(r'(token=)[^&\s\'"]*', re.IGNORECASE)


class _HeadLimit:
    """The connection's reader, with a budget for the lines of each
    request's head: the standard parser bounds each line and their number,
    not their sum (100 lines of 64 KiB)."""

    def __init__(self, rfile):
        self._rfile = rfile
        self.budget = MAX_HEAD_BYTES

    def readline(self, limit: int = -1) -> bytes:
        if self.budget <= 0:
            raise http.client.HTTPException(f'the head of the request is over {MAX_HEAD_BYTES} bytes')
        line = self._rfile.readline(limit)
        self.budget -= len(line)
        return line

    def __getattr__(self, name: str):
        return getattr(self._rfile, name)


class _Handler(BaseHTTPRequestHandler):
    server: StatusServer
    server_version = f'coldoc_tasks/{__version__}'
    sys_version = ''
    protocol_version = 'HTTP/1.1'
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        self.timeout = self.server.request_timeout
        super().setup()
        self.rfile = _HeadLimit(self.rfile)

    def handle_one_request(self) -> None:
        # The socket's timeout bounds each read; this, the whole request.
        self._watchdog = threading.Timer(self.timeout, self._cut)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.rfile.budget = MAX_HEAD_BYTES
        try:
            super().handle_one_request()
        finally:
            self._watchdog.cancel()

    def _cut(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RD)  # the blocked read ends; what was read is dropped
        except OSError:
            pass

    def _answer(self) -> None:
        body_read = False

        def read_body(length: int) -> bytes:
            nonlocal body_read
            body = self.rfile.read(length)
            body_read = True
            self._watchdog.cancel()
            return body

        if self.command != 'POST':
            self._watchdog.cancel()  # the request is read: its answer may take its time
        # Where the body ends must be beyond doubt, else it is not read (and the connection is closed).
        chunked = self.headers.get('Transfer-Encoding') is not None
        lengths = len(self.headers.get_all('Content-Length') or ())
        try:
            if chunked:
                answer = error_answer(501, 'a body in chunks (Transfer-Encoding) is not supported: '
                                           'send a Content-Length')
            elif lengths > 1:
                answer = error_answer(400, 'more than one Content-Length')
            else:
                answer = self.server.app.handle(self.command, self.path, self.headers, read_body)
        except TimeoutError:
            answer = error_answer(408, 'the body of the request did not come in time')
        except Exception:
            logger.exception('the status page failed to answer %s', self.command)
            answer = Answer(500, b'{"error":"internal error, see the log"}', 'application/json')
        self.send_response(answer.status)
        self.send_header('Content-Type', answer.content_type)
        self.send_header('Content-Length', str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        # A body left unread would be taken for the next request on the connection.
        unread = not body_read and (self.headers.get('Content-Length') or '0').strip() != '0'
        if chunked or lengths > 1 or unread or (self.command == 'POST' and answer.status != 200):
            self.send_header('Connection', 'close')
            self.close_connection = True
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """What a request that cannot be parsed gets: JSON, with the page's
        headers, and the connection closed."""
        self.log_error('code %d, message %s', code, message)
        answer = error_answer(code, message or self.responses.get(code, ('error',))[0])
        self.request_version = 'HTTP/1.0'  # (an unparsable one is taken for 0.9, which gets no headers)
        self.send_response(code)
        self.send_header('Content-Type', answer.content_type)
        self.send_header('Content-Length', str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header('Connection', 'close')
        self.close_connection = True
        self.end_headers()
        if getattr(self, 'command', None) != 'HEAD' and code >= 200 and code not in (204, 304):
            self.wfile.write(answer.body)

    def _clean(self, text: str) -> str:
        """``text`` for the log: without the token, nor control characters."""
        text = _QUERY_TOKEN.sub(r'\1[hidden]', text.replace(self.server.app.token, '[token]'))
        return text.translate(_CONTROL)

    def log_message(self, format: str, *args: object) -> None:
        logger.info('%s %s', self.address_string(), self._clean(format % args))

    def log_request(self, code: int | str = '-', size: int | str = '-') -> None:
        # Never the query: it holds the token.  (A request line that could
        # not be parsed leaves path and command unset.)
        path = str(getattr(self, 'path', None) or '-').split('?', 1)[0]
        logger.info('%s "%s %s" %s', self.address_string(), self._clean(str(getattr(self, 'command', None))),
                    self._clean(path[:200]), code)


class StatusServer(ThreadingHTTPServer):
    """The HTTP server of the page: a thread per connection, at most
    ``max_connections`` of them; ``app`` answers."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: StatusApp, request_timeout: float = REQUEST_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS):
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f'max_connections must be 1 or more (a whole number), not {max_connections!r}')
        self.app = app
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refused = 0  # in the current run of refusals (read and written by serve_forever's thread only)
        host = address[0]
        self.address_family = socket.AF_INET6 if ':' in host else socket.AF_INET
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        if self._refused:
            logger.warning('the status page serves again, after refusing %d connection(s)', self._refused)
            self._refused = 0
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread took it
            raise

    def handle_error(self, request: socket.socket, client_address: tuple) -> None:
        """A client that went away is no error of the page's (and says
        nothing in the log); anything else goes to the log, not to stderr."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug('a client of the status page went away: %s', error)
        else:
            logger.error('the status page failed on a connection', exc_info=error)

    def process_request_thread(self, request: socket.socket, client_address: tuple) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket, client_address: tuple) -> None:
        """Answer 503 without a thread nor a wait, and close."""
        if not self._refused:
            logger.warning('the status page serves %d connections, its most (--max-connections): it refuses '
                           'others until one ends', self.max_connections)
        self._refused += 1
        answer = error_answer(503, f'too many connections (at most {self.max_connections}): try again later')
        head = ['HTTP/1.1 503 Service Unavailable', f'Server: {_Handler.server_version}',
                f'Date: {formatdate(usegmt=True)}', f'Content-Type: {answer.content_type}',
                f'Content-Length: {len(answer.body)}', *(f'{k}: {v}' for k, v in answer.headers.items()),
                'Retry-After: 1', 'Connection: close']
        try:
            request.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                for _ in range(16):  # what came already: closed unread, it would make the close a reset
                    if not request.recv(65536):
                        break
            request.send('\r\n'.join(head).encode('latin-1') + b'\r\n\r\n' + answer.body)
        except OSError:
            pass  # the client is gone, or does not read: it gets nothing
        self.shutdown_request(request)

    def url(self, token: str) -> str:
        """The page's address, with its token."""
        host, port = self.server_address[:2]
        if ipaddress.ip_address(host).is_unspecified:
            host = socket.gethostname()
        elif ':' in host:
            host = f'[{host}]'
        return f'http://{host}:{port}/?token={token}'


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` (on the loopback
    interface) as ``(host, port)``; raise ValueError saying what is wrong.
    The host must be an IP address; port 0 picks a free one."""
    host, port_text = DEFAULT_HOST, text
    if ':' in text:
        host, _, port_text = text.rpartition(':')
        host = host[1:-1] if host.startswith('[') and host.endswith(']') else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f'{host!r} is not an IP address (give HOST:PORT, e.g. 127.0.0.1:8000)') from None
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f'{port_text!r} is not a port number (0 to 65535; 0 picks a free one)')
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address) is reachable from this machine only."""
    return ipaddress.ip_address(host).is_loopback


def serve(infofile: PathLike, host: str = DEFAULT_HOST, port: int = 0, timeout: float = 5.0,
          out: TextIO | None = None, err: TextIO | None = None, request_timeout: float = REQUEST_TIMEOUT,
          max_connections: int = MAX_CONNECTIONS) -> int:
    """Serve the page of the server of ``infofile`` until SIGINT or SIGTERM;
    return the exit status.  Must run in the main thread (it handles those
    signals).  The infofile must exist (its key makes the token); the task
    server itself may come and go: the page says when it does not answer.
    ``request_timeout``: the seconds a client has to send a request (and
    a connection may stay idle); ``max_connections``: the connections
    served at once, beyond which one more gets 503 (ValueError below 1)."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    token = page_token(read_infofile(infofile)['authkey'])
    httpd = StatusServer((host, port), StatusApp(infofile, token, timeout, bound=host), request_timeout,
                         max_connections)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if not stop.is_set():
            stop.set()
            # shutdown() waits for serve_forever, which runs in this thread: ask from another
            threading.Thread(target=httpd.shutdown, name='coldoc-web-stop', daemon=True).start()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(httpd.url(token), file=out, flush=True)
        if not is_loopback(host):
            print(f'coldoc_tasks_cli: warning: the status page listens on {host}, reachable from other '
                  'machines; its token travels in clear over HTTP (put it behind an HTTPS proxy)',
                  file=err, flush=True)
        print(f'coldoc_tasks_cli: serving the status page of {infofile}; Ctrl-C to stop', file=err, flush=True)
        httpd.serve_forever(poll_interval=0.5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        httpd.server_close()
    return 0
