"""The status page in a Django site (``include('coldoc_tasks.web.django_urls')``),
over real HTTP (gunicorn) against the site's real task server: staff users
only, the same data, the action under Django's CSRF protection."""

from __future__ import annotations

import http.client
import json
import re

import pytest

from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc_tasks import bind_fork_class, status
from coldoc_tasks.exceptions import ColdocTasksProcessLookupError
from coldoc_tasks.web.token import page_token
from tests import jobs
from tests.fixtures_django import task_servers

pytest.importorskip('django')

pytestmark = pytest.mark.timeout(240)

URLS = """
from django.urls import include, path
from mysite.urls import urlpatterns as site_urls

urlpatterns = [*site_urls, path('tasks/', include('coldoc_tasks.web.django_urls'))]
"""

#: Two users, one of them staff, and a session for each (what a login makes).
USERS = """
import json
import re
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
keys = {}
for name, staff in (('staff', True), ('visitor', False)):
    user = get_user_model().objects.create_user(name, password='not-used-' + name, is_staff=staff)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    keys[name] = session.session_key
print(json.dumps(keys))
"""


@pytest.fixture
def site(django_site):
    django_site.configure(
        COLDOC_TASKS_AUTOSTART=None, ROOT_URLCONF='web_urls',
        INSTALLED_APPS=['django.contrib.auth', 'django.contrib.contenttypes', 'django.contrib.sessions',
                        'django.contrib.staticfiles', 'coldoc_tasks', 'reports'],
        MIDDLEWARE=['django.middleware.security.SecurityMiddleware',
                    'django.contrib.sessions.middleware.SessionMiddleware',
                    'django.middleware.common.CommonMiddleware', 'django.middleware.csrf.CsrfViewMiddleware',
                    'django.contrib.auth.middleware.AuthenticationMiddleware'])
    (django_site.path / 'web_urls.py').write_text(URLS)
    django_site.manage('migrate', '-v0')
    django_site.sessions = json.loads(django_site.manage('shell', '-c', USERS).stdout.strip().splitlines()[-1])
    started = django_site.cli('coldoc', 'django_daemon', '--settings', 'site_settings', '--concurrency', '2')
    assert started.returncode == 0, started.stderr
    django_site.gunicorn(workers=2)
    return django_site


def _request(site, path, *, user=None, method='GET', headers=None, body=None, cookies=None):
    """``(status, headers, body)``, following no redirect; ``user``: whose session."""
    jar = dict(cookies or {})
    if user is not None:
        jar['sessionid'] = site.sessions[user]
    headers = dict(headers or {})
    if jar:
        headers['Cookie'] = '; '.join(f'{name}={value}' for name, value in jar.items())
    connection = http.client.HTTPConnection('127.0.0.1', site.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _csrf_cookie(headers) -> str:
    for value in headers.get_all('Set-Cookie') or []:
        if value.startswith('csrftoken='):
            return value.split(';', 1)[0].split('=', 1)[1]
    raise AssertionError(f'no csrftoken cookie in {headers.get_all("Set-Cookie")}')


def test_the_page_is_for_staff_users_only(site):
    code, headers, _ = _request(site, '/tasks/')
    assert code == 302 and headers['Location'].startswith('/accounts/login/?next=/tasks/')
    for user in (None, 'visitor'):
        for path in ('/tasks/api/status', '/tasks/metrics'):
            code, _, body = _request(site, path, user=user)
            assert code == 403 and b'queues' not in body and b'coldoc_tasks_up' not in body, (user, path)
    code, _, _ = _request(site, '/tasks/', user='visitor')
    assert code == 403

    code, headers, body = _request(site, '/tasks/', user='staff')
    assert code == 200 and headers['Content-Type'].startswith('text/html')
    assert "script-src 'sha256-" in headers['Content-Security-Policy']
    assert headers['Referrer-Policy'] == 'no-referrer' and headers['Cache-Control'] == 'no-store'
    assert _csrf_cookie(headers)
    # the page carries the CSRF token its script sends
    assert re.search(rb'<meta name="coldoc-csrf" content="[A-Za-z0-9]{32,}">', body)

    (server,) = task_servers(site.directory)
    code, headers, body = _request(site, '/tasks/api/status', user='staff')
    data = json.loads(body)
    assert code == 200 and data['available'] is True and data['server']['pid'] == server
    assert data['infofile'] == site.infofile
    code, headers, body = _request(site, '/tasks/metrics', user='staff')
    assert code == 200 and b'\ncoldoc_tasks_up 1\n' in body
    code, _, _ = _request(site, '/tasks/api/terminate', user='staff')
    assert code == 405


def test_terminate_needs_staff_and_the_csrf_token(site, rendezvous):
    code, headers, _ = _request(site, '/tasks/', user='staff')
    csrf = _csrf_cookie(headers)
    f = bind_fork_class(site.infofile)()
    f.run(jobs.rendezvous, rendezvous.address)
    conn, _ = rendezvous.accept()
    body = json.dumps({'task_id': f.task_id}).encode()
    json_type = {'Content-Type': 'application/json'}
    # without the CSRF token (a cross-site post would be so), with a wrong one, or by a visitor: refused
    for user, headers, cookies in (('staff', json_type, {}), ('staff', json_type, {'csrftoken': csrf}),
                                   ('staff', {**json_type, 'X-CSRFToken': 'x' * 32}, {'csrftoken': csrf}),
                                   ('visitor', {**json_type, 'X-CSRFToken': csrf}, {'csrftoken': csrf})):
        code, _, answer = _request(site, '/tasks/api/terminate', user=user, method='POST', headers=headers,
                                   body=body, cookies=cookies)
        assert code == 403, (user, headers, answer[:200])
    (running,) = status(site.infofile)['tasks']  # the task still runs
    assert running['id'] == f.task_id and running['state'] == 'running' and not running['terminating']
    code, _, answer = _request(site, '/tasks/api/terminate', user='staff', method='POST',
                               headers={**json_type, 'X-CSRFToken': csrf}, body=body, cookies={'csrftoken': csrf})
    assert code == 200 and json.loads(answer) == {'task_id': f.task_id, 'state': 'running'}
    with pytest.raises(ColdocTasksProcessLookupError, match='terminated'):
        f.wait(timeout=60)
    conn.close()
    code, _, answer = _request(site, '/tasks/api/status', user='staff')
    assert json.loads(answer)['server']['recent_tasks'][0]['state'] == 'terminated'

    # hostile requests of a staff user's browser: a clear 4xx each, never a 500
    def post(data: bytes, **extra) -> tuple[int, bytes]:
        code, _, answer = _request(site, '/tasks/api/terminate', user='staff', method='POST', body=data,
                                   headers={**json_type, 'X-CSRFToken': csrf, **extra}, cookies={'csrftoken': csrf})
        return code, answer

    g = bind_fork_class(site.infofile)()
    g.run(jobs.rendezvous, rendezvous.address, 'kept')
    conn, _ = rendezvous.accept()
    # another site's script, even with the token (it cannot read it): Django's Origin check
    code, _ = post(json.dumps({'task_id': g.task_id}).encode(), Origin='http://evil.example')
    assert code == 403
    assert post(json.dumps({'task_id': g.task_id}).encode(), **{'Content-Type': 'text/plain'})[0] == 415
    for data, expected in ((b'[' * 4000, 400), (b'not json', 400), (b'{"task_id": "<b>"}', 400),
                           (json.dumps({'task_id': '0' * 32}).encode(), 404), (b'x' * 5000, 413)):
        code, answer = post(data)
        assert code == expected and b'Traceback' not in answer, (data[:20], code, answer[:200])
    assert status(site.infofile)['tasks'][0]['state'] == 'running'
    rendezvous.release(conn)
    assert g.wait(timeout=60) == 'kept'
    # the standalone page's token is in no answer of the site
    token = page_token(read_infofile(site.infofile)['authkey'])
    for path in ('/tasks/', '/tasks/api/status', '/tasks/metrics'):
        assert token.encode() not in _request(site, path, user='staff')[2], path
