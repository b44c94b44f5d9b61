"""The status page's server (``coldoc web``) over real HTTP, against a real
task server: the token, the JSON, the Prometheus text, the action and its
guards, the errors, the command line.  The page in a browser is in
test_web_browser.py."""

from __future__ import annotations

import json
import math
import re
import socket
import subprocess
import sys
import threading

import pytest

from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc.report import format_status
from coldoc_tasks.coldoc_tasks import bind_fork_class, shutdown, status
from coldoc_tasks.exceptions import ColdocTasksProcessLookupError
from coldoc_tasks.web.hosts import host_allowed
from coldoc_tasks.web.metrics import prometheus_text
from coldoc_tasks.web.standalone import parse_bind
from coldoc_tasks.web.token import page_token, token_matches
from tests import jobs
from tests.fixtures_coldoc import ROOT
from tests.helpers_coldoc import wait_until
from tests.helpers_web import start_web

pytestmark = pytest.mark.timeout(180)


# -- the token ----------------------------------------------------------------------


def test_the_token_is_derived_from_the_key_and_is_not_the_key():
    token = page_token(b'k' * 32)
    assert re.fullmatch(r'[0-9a-f]{64}', token)
    assert token == page_token(b'k' * 32) != page_token(b'l' * 32)
    assert b'k' * 32 not in token.encode() and (b'k' * 32).hex() not in token
    assert token_matches(token, token)
    assert not token_matches(token[:-1] + ('0' if token[-1] != '0' else '1'), token)
    assert not token_matches('', token) and not token_matches(None, token)
    assert not token_matches('é' * 64, token)


def test_every_address_needs_the_token(web, coldoc_server):
    key = read_infofile(coldoc_server.infofile)['authkey']
    assert web.token == page_token(key)
    for path in ('', 'api/status', 'metrics', 'nothing-here'):
        for token in (None, 'wrong', web.token.upper(), web.token[:-2]):
            code, headers, body = web.request(path, token=token)
            assert code == 403, (path, token, code)
            assert b'pid' not in body and b'queues' not in body and b'coldoc_tasks_up' not in body
            assert headers['Cache-Control'] == 'no-store'
    code, _, _ = web.request('api/terminate', method='POST', token=None, body=b'{}',
                             headers={'Content-Type': 'application/json'})
    assert code == 403
    for way in ('query', 'header', 'bearer'):
        assert web.json(token=way)['available'] is True, way


def test_the_security_headers(web):
    code, headers, body = web.request('')
    assert code == 200 and headers['Content-Type'].startswith('text/html')
    policy = headers['Content-Security-Policy']
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and 'unsafe' not in policy
    assert "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    for _, page_headers, _ in (web.request(''), web.request('api/status'), web.request('metrics')):
        assert page_headers['X-Content-Type-Options'] == 'nosniff'
        assert page_headers['Referrer-Policy'] == 'no-referrer'
        assert page_headers['Cache-Control'] == 'no-store'
    # the page holds no token: its script reads it from the address
    assert web.token.encode() not in body and b'<script>' in body


# -- what it shows ------------------------------------------------------------------------


def test_the_json_holds_the_status_the_workers_and_the_last_failures(web, coldoc_server, rendezvous):
    fork_class = bind_fork_class(coldoc_server.infofile)
    failing = fork_class()
    failing.run(jobs.fail_with_value_error, 'the reason of the failure')
    failing.wait(timeout=30, raise_exception=False)
    running = fork_class()
    running.run(jobs.report_then_rendezvous, rendezvous.address, 3, 10, 'a third')
    conn, (pid,) = rendezvous.accept()
    try:
        wait_until(lambda: (web.json()['server']['tasks'] or [{}])[0].get('progress') is not None,
                   what='the running task shows its progress')
        data = web.json()
        assert data['available'] is True and data['error'] is None and data['infofile'] == coldoc_server.infofile
        server = data['server']
        assert server['pid'] == coldoc_server.pid
        (task,) = server['tasks']
        assert task == {**task, 'id': running.task_id, 'state': 'running', 'worker_pid': pid,
                        'function': 'tests.jobs.report_then_rendezvous', 'terminating': False}
        assert task['progress'] == {'done': 3, 'total': 10, 'message': 'a third', 'metadata': {'stage': 'first'}}
        assert task['runtime'] >= 0
        (queue,) = server['queues']
        assert queue == {**queue, 'name': 'default', 'concurrency': 2, 'running': 1, 'queued': 0, 'lent_slots': 0}
        busy = [w for w in server['worker_processes'] if w['task'] == running.task_id]
        assert len(busy) == 1 and busy[0]['pid'] == pid and busy[0]['state'] == 'busy'
        assert busy[0]['rss'] > 1_000_000 and busy[0]['age'] >= 0 and busy[0]['queue'] == 'default'
        assert server['rss'] > 1_000_000
        (failure,) = server['recent_failures']
        assert failure['id'] == failing.task_id and failure['state'] == 'failed'
        assert failure['error']['type'] == 'ValueError'
        assert failure['error']['message'] == 'the reason of the failure'
        assert 'raise ValueError(message)' in failure['error']['traceback']
        assert [t['id'] for t in server['recent_tasks']] == [failing.task_id]
        # the key is nowhere
        key = read_infofile(coldoc_server.infofile)['authkey']
        text = json.dumps(data)
        assert key.hex() not in text and web.token not in text
        # the same as `status`, and its text
        info = status(coldoc_server.infofile)
        assert info['recent_failures'] == server['recent_failures']
        text = format_status(info)
        assert f'{failing.task_id} tests.jobs.fail_with_value_error failed: ValueError: the reason' in text
        assert re.search(rf'^ +{pid} default +busy +1 .* {running.task_id}$', text, re.M), text
    finally:
        rendezvous.release(conn)
    assert running.wait(timeout=30) == 3
    ended = web.json()['server']['recent_tasks']
    assert ended[0]['id'] == running.task_id and ended[0]['state'] == 'done'
    assert ended[0]['progress']['done'] == 10 and ended[0]['error'] is None


def _parse_exposition(text: str) -> dict[str, dict]:
    """A strict reading of the text format: each family's HELP, TYPE and
    samples, in that order; every line of one of these three forms."""
    families: dict[str, dict] = {}
    current = None
    sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                        r'(-?[0-9.e+-]+|NaN|[+-]Inf)$')
    assert text.endswith('\n')
    for line in text.splitlines():
        if line.startswith('# HELP '):
            name = line.split(' ', 3)[2]
            assert name not in families, f'{name} twice'
            current = families[name] = {'help': line.split(' ', 3)[3], 'samples': []}
        elif line.startswith('# TYPE '):
            _, _, name, kind = line.split(' ')
            assert current is families.get(name) and kind in ('counter', 'gauge'), line
            current['type'] = kind
        else:
            match = sample.match(line)
            assert match, f'not a sample line: {line!r}'
            name = match.group(1)
            assert families.get(name) is current, line
            assert current['type'] != 'counter' or name.endswith('_total'), line
            current['samples'].append((match.group(2) or '', float(match.group(3))))
    return families


def test_the_metrics_are_valid_prometheus_text(web, coldoc_server):
    fork_class = bind_fork_class(coldoc_server.infofile)
    for value in range(3):
        f = fork_class()
        f.run(jobs.add, value, 1)
        assert f.wait(timeout=30) == value + 1
    code, headers, body = web.request('metrics', token='bearer')
    assert code == 200 and headers['Content-Type'].startswith('text/plain; version=0.0.4')
    families = _parse_exposition(body.decode('utf-8'))
    assert families['coldoc_tasks_up']['samples'] == [('', 1.0)]
    assert families['coldoc_tasks_submitted_total']['type'] == 'counter'
    assert families['coldoc_tasks_submitted_total']['samples'] == [('', 3.0)]
    assert families['coldoc_tasks_done_total']['samples'] == [('', 3.0)]
    assert families['coldoc_tasks_queue_concurrency']['samples'] == [('{queue="default"}', 2.0)]
    for name in ('queue_queued', 'queue_running', 'queue_lent_slots', 'workers', 'server_resident_bytes',
                 'workers_resident_bytes', 'uptime_seconds', 'failed_total', 'lost_total', 'terminated_total'):
        assert 'coldoc_tasks_' + name in families, name
    # and as Prometheus's own parser reads it
    parser = pytest.importorskip('prometheus_client.parser')
    parsed = {family.name: family for family in parser.text_string_to_metric_families(body.decode())}
    assert parsed['coldoc_tasks_submitted'].type == 'counter'  # the parser names a counter without _total
    assert [sample.value for sample in parsed['coldoc_tasks_submitted'].samples] == [3]
    assert [sample.labels for sample in parsed['coldoc_tasks_queue_queued'].samples] == [{'queue': 'default'}]


def test_label_values_and_help_are_escaped():
    snapshot = {'time': 1.0, 'server': {
        'started': 0, 'uptime': 1, 'stopping': False, 'clients': 0, 'workers': 0, 'tasks_queued': 0, 'tasks': [],
        'results_held': 0, 'rss': None, 'worker_processes': [],
        'queues': [{'name': 'a "quoted"\\ name\n', 'concurrency': 1, 'running': 0, 'queued': 0, 'lent_slots': 0,
                    'idle_workers': 0}],
        'counters': {'odd-name': 1, 'odd_name': 2}}}
    families = _parse_exposition(prometheus_text(snapshot))
    assert families['coldoc_tasks_queue_concurrency']['samples'] == [('{queue="a \\"quoted\\"\\\\ name\\n"}', 1.0)]
    assert families['coldoc_tasks_odd_name_total']['type'] == 'counter'
    assert len([name for name in families if name.startswith('coldoc_tasks_odd_name_')]) == 2
    ((labels, value),) = families['coldoc_tasks_server_resident_bytes']['samples']
    assert labels == '' and math.isnan(value)  # not known


# -- the action ---------------------------------------------------------------------------


def test_terminate_a_running_and_a_queued_task(web, coldoc_server, rendezvous):
    fork_class = bind_fork_class(coldoc_server.infofile)
    running = [fork_class() for _ in range(2)]
    for f in running:
        f.run(jobs.rendezvous, rendezvous.address)
    meetings = [rendezvous.accept() for _ in running]
    queued = fork_class()
    queued.run(jobs.add, 1, 2)  # the two slots are taken: it waits
    wait_until(lambda: status(coldoc_server.infofile)['tasks_queued'] == 1, what='a queued task')
    code, _, body = web.terminate(queued.task_id)
    assert code == 200 and json.loads(body) == {'task_id': queued.task_id, 'state': 'cancelled'}
    with pytest.raises(ColdocTasksProcessLookupError, match='cancelled'):
        queued.wait(timeout=30)
    # the task that met the rendezvous first goes; the other is released
    by_pid = {task['worker_pid']: task['id'] for task in web.json()['server']['tasks']}
    doomed = next(f for f in running if f.task_id == by_pid[meetings[0][1][0]])
    spared = next(f for f in running if f is not doomed)
    code, _, body = web.terminate(doomed.task_id, token='bearer')
    assert code == 200 and json.loads(body)['state'] == 'running'  # SIGTERM is on its way
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        doomed.wait(timeout=30)
    wait_until(lambda: web.json()['server']['recent_failures'][0]['state'] == 'terminated',
               what='the page lists the terminated task')
    code, _, body = web.terminate('0123456789abcdef')
    assert code == 404 and b'not known' in body
    rendezvous.release(meetings[1][0])
    assert spared.wait(timeout=30) is None


def test_terminate_refuses_what_a_cross_site_request_can_send(web, coldoc_server, rendezvous):
    f = bind_fork_class(coldoc_server.infofile)()
    f.run(jobs.rendezvous, rendezvous.address, 'survived')
    conn, _ = rendezvous.accept()
    form = f'task_id={f.task_id}'.encode()
    attempts = [
        # a form of another site: the token can only be in the address, the body is a form
        dict(token='query', headers={'Content-Type': 'application/x-www-form-urlencoded'}, body=form),
        dict(token='query', headers={'Content-Type': 'application/json'}),
        dict(token='header', headers={'Content-Type': 'application/json', 'Sec-Fetch-Site': 'cross-site'}),
        dict(token='header', headers={'Content-Type': 'application/json', 'Sec-Fetch-Site': 'same-site'}),
        dict(token='header', headers={'Content-Type': 'application/json', 'Origin': 'http://evil.example'}),
        dict(token='header', headers={'Content-Type': 'text/plain'}),
    ]
    for attempt in attempts:
        body = attempt.pop('body', json.dumps({'task_id': f.task_id}).encode())
        code, _, answer = web.request('api/terminate', method='POST', body=body, **attempt)
        assert code in (403, 415), (attempt, code, answer)
    for bad_body in (b'not json', b'[]', b'{"task_id": 3}', b'{"task_id": "a b"}'):
        code, _, _ = web.request('api/terminate', method='POST', token='header', body=bad_body,
                                 headers={'Content-Type': 'application/json'})
        assert code == 400, bad_body
    # what the page itself sends is accepted: same origin, token in a header
    origin = web.base.rstrip('/')
    assert status(coldoc_server.infofile)['tasks'][0]['state'] == 'running'
    rendezvous.release(conn)
    assert f.wait(timeout=30) == 'survived'
    g = bind_fork_class(coldoc_server.infofile)()
    g.run(jobs.rendezvous, rendezvous.address)
    rendezvous.accept()
    code, _, _ = web.terminate(g.task_id, headers={'Origin': origin, 'Sec-Fetch-Site': 'same-origin'})
    assert code == 200
    with pytest.raises(ColdocTasksProcessLookupError):
        g.wait(timeout=30)


def test_unknown_addresses_and_methods(web):
    code, _, _ = web.request('no/such/page')
    assert code == 404
    for path in ('', 'api/status', 'metrics'):
        for method in ('POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'):
            code, headers, _ = web.request(path, method=method, body=b'' if method != 'OPTIONS' else None)
            assert code == 405, (path, method)
            assert headers['Allow'] == 'GET, HEAD'
    code, headers, _ = web.request('api/terminate')
    assert code == 405 and headers['Allow'] == 'POST'
    code, headers, body = web.request('api/status', method='HEAD')
    assert code == 200 and body == b'' and int(headers['Content-Length']) > 0


# -- robustness ---------------------------------------------------------------------------


def test_a_misbehaving_client_does_not_stop_the_page(web):
    host, port = web.base.split('//')[1].rstrip('/').split(':')
    silent = socket.create_connection((host, int(port)))  # connects and says nothing
    garbage = socket.create_connection((host, int(port)))
    garbage.sendall(b'\x00\xff /garbage HTTP/9.9\r\n\r\n')
    half = socket.create_connection((host, int(port)))
    half.sendall(b'POST /api/terminate?token=' + web.token.encode() + b' HTTP/1.1\r\nContent-Length: 100\r\n'
                 b'X-Coldoc-Token: ' + web.token.encode() + b'\r\nContent-Type: application/json\r\n\r\n{')
    try:
        assert web.json()['available'] is True
        garbage.settimeout(30)
        answer = b''
        while chunk := garbage.recv(4096):  # until the page closes it
            answer += chunk
        assert _json_error(answer)[:3:2] == (505, {'error': 'Invalid HTTP version (9.9)'})
    finally:
        for sock in (silent, garbage, half):
            sock.close()
    assert web.json()['available'] is True


def test_the_page_says_when_the_server_is_down_and_comes_back(coldoc_server, make_server):
    page = start_web(coldoc_server.infofile)
    try:
        assert page.json()['available'] is True
        shutdown(coldoc_server.infofile, grace=0, timeout=30)
        down = page.json()
        assert down['available'] is False and down['server'] is None and down['error']
        code, _, body = page.request('metrics')
        assert code == 200 and b'\ncoldoc_tasks_up 0\n' in b'\n' + body
        code, _, body = page.terminate('0123456789abcdef')
        assert code == 503
        # the same infofile, a new server (it reuses the socket and the key)
        from coldoc_tasks.coldoc_tasks import tasks_daemon_start

        pid = tasks_daemon_start(coldoc_server.infofile, logfile=coldoc_server.logfile, pythonpath=[str(ROOT)],
                                 timeout=30)
        coldoc_server.pid = pid
        back = page.json()
        assert back['available'] is True and back['server']['pid'] == pid
    finally:
        assert page.stop() == 0


# -- the command line ----------------------------------------------------------------------


def test_the_command_prints_the_url_first_and_ends_cleanly_on_sigterm(coldoc_server):
    page = start_web(coldoc_server.infofile, '--bind', '127.0.0.1:0')
    assert re.fullmatch(r'http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{64}', page.url)
    assert page.json()['available'] is True
    assert page.stop() == 0


def test_the_command_warns_of_an_address_other_than_loopback(coldoc_server):
    page = start_web(coldoc_server.infofile, '--bind', '0.0.0.0:0')
    try:
        assert '/?token=' in page.url and not page.url.startswith('http://127.')
        assert 'warning' in page.process.stderr.readline()
    finally:
        assert page.stop() == 0


def test_the_command_refuses_bad_arguments(coldoc_server, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, '-m', 'coldoc_tasks.cli', 'coldoc', 'web', *args],
                              capture_output=True, text=True, timeout=60, cwd=str(ROOT))

    done = run(coldoc_server.infofile, '--bind', 'localhost:80x')
    assert done.returncode == 2 and 'not an IP address' in done.stderr
    done = run(coldoc_server.infofile, '--bind', '127.0.0.1:70000')
    assert done.returncode == 2 and 'not a port number' in done.stderr
    done = run(str(tmp_path / 'missing'))
    assert done.returncode == 1 and 'cannot serve the status page' in done.stderr and done.stdout == ''
    assert parse_bind('8000') == ('127.0.0.1', 8000) and parse_bind('[::1]:0') == ('::1', 0)


# -- a hostile pass: what another user of the machine, or another site, may send ---------------


def _json_error(answer: bytes) -> tuple[int, dict, dict]:
    """The status, headers and JSON body of a raw HTTP answer."""
    head, _, body = answer.partition(b'\r\n\r\n')
    lines = head.decode('latin-1').split('\r\n')
    headers = dict(line.split(': ', 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_a_request_naming_another_host_is_refused(web, coldoc_server, rendezvous):
    # DNS rebinding: another site's name, made to resolve to 127.0.0.1
    port = web.address[1]
    for host in ('evil.example', f'evil.example:{port}', '127.0.0.1.evil.example', 'localhost.evil.example',
                 '10.0.0.1', '[::2]'):
        code, headers, body = web.request('api/status', headers={'Host': host})
        assert code == 421, (host, code)
        assert b'does not answer for the host' in body and b'queues' not in body
        assert headers['Content-Security-Policy'] == "default-src 'none'; frame-ancestors 'none'"
    code, _, body = web.request('', headers={'Host': 'evil.example'})
    assert code == 421 and b'<script>' not in body
    # no Host at all (HTTP/1.0): refused too
    status_code, _, answer = _json_error(web.raw(f'GET /api/status?token={web.token} HTTP/1.0\r\n\r\n'.encode()))
    assert status_code == 421 and 'host' in answer['error']
    # the action, from the rebound site with its own origin: refused before anything else
    f = bind_fork_class(coldoc_server.infofile)()
    f.run(jobs.rendezvous, rendezvous.address, 'kept')
    conn, _ = rendezvous.accept()
    code, _, _ = web.terminate(f.task_id, headers={'Host': f'evil.example:{port}',
                                                   'Origin': f'http://evil.example:{port}'})
    assert code == 421
    assert status(coldoc_server.infofile)['tasks'][0]['state'] == 'running'
    rendezvous.release(conn)
    assert f.wait(timeout=30) == 'kept'
    # the loopback names, whatever the port (a forwarded one may differ)
    for host in ('localhost', 'localhost:1', f'127.0.0.1:{port}', '127.1.2.3', '[::1]:9', 'page.localhost',
                 'LOCALHOST.'):
        code, _, _ = web.request('api/status', headers={'Host': host})
        assert code == 200, host


def test_which_hosts_a_page_answers_for():
    assert host_allowed('evil.example', '0.0.0.0') and host_allowed(None, '192.0.2.1')  # behind a proxy
    assert host_allowed('127.0.0.2:80', '127.0.0.2') and not host_allowed('evil.example', '::1')
    assert host_allowed('[::1]:8000', '::1') and not host_allowed('[::1', '127.0.0.1')
    assert not host_allowed('', '127.0.0.1') and host_allowed('LocalHost.:80', '127.0.0.1')


def test_malformed_requests_get_a_json_error_with_the_headers(web):
    answers = {
        'a long address': web.raw(b'GET /?x=' + b'a' * 70000 + b' HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'),
        'a bad request line': web.raw(b'GET / HTTP/1.1 more\r\n\r\n'),
        'a bad version': web.raw(b'GET / HTTP/9.9\r\n\r\n'),
        'too many headers': web.raw(b'GET / HTTP/1.1\r\n' + b'X-A: b\r\n' * 150 + b'\r\n'),
        'binary': web.raw(b'\x00\xff /garbage HTTP/1.1\r\n\r\n'),
    }
    for what, answer in answers.items():
        code, headers, body = _json_error(answer)
        assert 400 <= code < 500 or code in (501, 505), what
        assert body['error'] and headers['X-Content-Type-Options'] == 'nosniff', what
        assert headers['Content-Security-Policy'] == "default-src 'none'; frame-ancestors 'none'", what
        assert headers['Connection'] == 'close', what
    assert _json_error(answers['a long address'])[0] == 414
    assert _json_error(answers['too many headers'])[0] == 431

    def post(body: bytes, length: str, content_type: str = 'application/json') -> tuple[int, dict]:
        code, _, answer = _json_error(web.raw(
            f'POST /api/terminate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Coldoc-Token: {web.token}\r\n'
            f'Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n'.encode() + body))
        return code, answer

    assert post(b'{}', 'abc')[0] == 400
    assert post(b'{}', '-5')[0] == 400
    assert post(b'{}', '0')[0] == 400
    assert post(b'{}', str(10 ** 30))[0] == 413
    assert post(b'x' * 5000, '5000')[0] == 413
    deep = b'[' * 4000
    code, answer = post(deep, str(len(deep)))  # nested deeper than the parser goes
    assert code == 400 and 'not JSON' in answer['error']
    bad_utf8 = b'{"task_id": "\xff\xfe"}'
    assert post(bad_utf8, str(len(bad_utf8)))[0] == 400
    # a task id that does not exist, or cannot be one: a clear 4xx, never a traceback
    for task_id, expected in (('0' * 200, 404), ('.', 404), ('0' * 201, 400), ('a/b', 400), ('<b>', 400),
                              ('', 400), ('é', 400)):
        body = json.dumps({'task_id': task_id}).encode()
        code, answer = post(body, str(len(body)))
        assert code == expected, (task_id, code, answer)
        assert 'Traceback' not in answer['error']
    for body in (b'{"task_id": null}', b'{"task_id": ["a"]}', b'"a"', b'{"id": "a"}'):
        code, answer = post(body, str(len(body)))
        assert code == 400 and 'task_id' in answer['error'], body
    assert web.json()['available'] is True


def test_a_slow_client_is_cut_off_and_others_are_served(coldoc_server):
    page = start_web(coldoc_server.infofile, '--request-timeout', '2')
    stop = threading.Event()
    cut = threading.Event()

    def trickle():  # a header line that never ends, one byte at a time
        with socket.create_connection(page.address) as sock:
            sock.sendall(f'GET /api/status?token={page.token} HTTP/1.1\r\nX-Slow: '.encode())
            try:
                while not stop.is_set():
                    sock.sendall(b'a')
                    stop.wait(0.2)
            except OSError:  # the page closed the connection
                cut.set()

    slow = threading.Thread(target=trickle, daemon=True)
    slow.start()
    silent = [socket.create_connection(page.address) for _ in range(20)]
    half = socket.create_connection(page.address)  # a body that never comes whole
    half.sendall(f'POST /api/terminate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Coldoc-Token: {page.token}\r\n'
                 'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{'.encode())
    try:
        for _ in range(3):
            assert page.json()['available'] is True
        half.settimeout(60)
        received = b''
        while chunk := half.recv(65536):  # until the page closes it
            received += chunk
        code, _, answer = _json_error(received)
        assert code in (400, 408) and answer['error']
        assert cut.wait(60), 'the trickling client was never cut off'
        assert page.json()['available'] is True
    finally:
        stop.set()
        for sock in (*silent, half):
            sock.close()
        slow.join(30)
        assert page.stop() == 0


def test_the_log_holds_no_token_nor_control_characters(coldoc_server):
    page = start_web(coldoc_server.infofile, log=True)
    try:
        assert page.json()['available'] is True
        page.raw(f'GET /?token={page.token} more HTTP/1.1\r\n\r\n'.encode())  # logged as unparsable
        page.raw(f'{page.token} / HTTP/1.1\r\n\r\n'.encode())  # an unknown method
        page.raw(f'GET /\x1b[2J?token={page.token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
                 .encode())
        page.raw(f'GET /?token={page.token}\x1b HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n'
                 .encode())
        page.request('nothing-here', token='header')
    finally:
        assert page.stop() == 0
    assert 'GET /nothing-here' in page.log and 'code 400' in page.log  # (it logs)
    assert page.token not in page.log and '\x1b' not in page.log
    assert '\\x1b[2J' in page.log and 'token=[hidden]' in page.log


