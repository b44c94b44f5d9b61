"""A Django site shaped like ColDoc (tests/coldoc_shaped_site), served over
HTTP by gunicorn: its wsgi.py sets ``$COLDOC_TASKS_AUTOSTART=all`` as
ColDoc's does, its settings ask for the coldoc server, and its views build
the chooser at import with a callback, pass it into tasks that run
subtasks, and keep fork objects pickled in the session, waited for by
another web process."""

from __future__ import annotations

import http.cookiejar
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest

from tests.fixtures_django import free_port, kill_naming, processes_naming, stop_group

pytest.importorskip('django')

SITE = pathlib.Path(__file__).resolve().parent / 'coldoc_shaped_site'
ROOT = SITE.parent.parent


class ColdocShapedSite:
    def __init__(self) -> None:
        self.run_root = tempfile.mkdtemp(prefix='ct-cd-')
        self.infofile = os.path.join(self.run_root, 'coldoc_tasks-info')
        self.processes: list[subprocess.Popen] = []
        self.port = free_port()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith('COLDOC_TASKS_')}
        env.update(CDSITE_RUN_ROOT=self.run_root, PYTHONPATH=os.pathsep.join([str(SITE), str(ROOT)]),
                   DJANGO_SETTINGS_MODULE='cdsite.settings', PYTHONDONTWRITEBYTECODE='1')
        return env

    def gunicorn(self) -> None:
        # every worker serves one request and is replaced: /collect runs in
        # another process than /run, as on a real site
        log = open(os.path.join(self.run_root, 'gunicorn.out'), 'wb')
        process = subprocess.Popen([sys.executable, '-m', 'gunicorn', '--workers', '2', '--max-requests', '1',
                                    '--bind', f'127.0.0.1:{self.port}', '--timeout', '120', 'cdsite.wsgi:application'],
                                   cwd=SITE, env=self.environment(), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes.append(process)
        from tests.fixtures_django import Site

        waiter = Site.__new__(Site)  # reuse its bounded wait for the port
        waiter.port, waiter.logs = self.port, [pathlib.Path(self.run_root, 'gunicorn.out')]
        Site.wait_up(waiter, process)

    def get(self, path: str) -> dict:
        with self.opener.open(f'http://127.0.0.1:{self.port}{path}', timeout=90) as response:
            return json.loads(response.read())

    def manage(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, 'manage.py', *args], cwd=SITE, env={**self.environment(), **(env or {})},
                              capture_output=True, text=True, timeout=120)

    def output(self) -> str:
        path = os.path.join(self.run_root, 'gunicorn.out')
        return open(path, errors='replace').read() if os.path.exists(path) else ''

    def close(self) -> None:
        for process in self.processes:
            stop_group(process)
        from coldoc_tasks.coldoc_tasks import shutdown

        try:
            shutdown(self.infofile, grace=0, timeout=15)
        except Exception:
            pass
        kill_naming(self.run_root)
        shutil.rmtree(self.run_root, ignore_errors=True)


@pytest.fixture
def coldoc_shaped_site():
    site = ColdocShapedSite()
    try:
        yield site
    finally:
        site.close()


def server_pids(site: ColdocShapedSite) -> list[int]:
    found = {pid: ppid for pid, (ppid, cmd) in processes_naming(site.run_root).items()
             if 'coldoc_tasks.django.server' in cmd}
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def test_coldoc_shaped_site_runs_its_tasks_on_the_autostarted_server(coldoc_shaped_site):
    site = coldoc_shaped_site
    site.gunicorn()
    info = site.get('/info')
    servers = server_pids(site)
    assert len(servers) == 1, site.output()
    assert info['fork_type'] == 'coldoc' and info['can_fork'] is True, site.output()
    assert info['choices'] == ['coldoc']  # the callback saw the choice, with one argument
    from coldoc_tasks.coldoc_tasks import ping

    assert ping(site.infofile)['pid'] == servers[0]
    started = site.get('/run?pages=3')
    assert started['fork_type'] == 'coldoc'
    collected = site.get('/collect')
    assert collected['pid'] != started['pid'], 'the fork objects were waited for in the same process'
    built, single = collected['results']
    assert built['fork_type'] == 'coldoc' and len(built['pages']) == 3
    for page in built['pages'] + [single]:
        assert page['settings'] == 'cdsite.settings'  # Django is set up in the workers
    assert built['pid'] != started['pid'] and built['pid'] != collected['pid']
    assert server_pids(site) == servers  # still one server: the other workers found it running


def test_without_the_flag_no_server_starts(coldoc_shaped_site):
    site = coldoc_shaped_site
    probe = ('import django; django.setup(); from cdapp import views; '
             'print(views.fork_class_default.fork_type)')
    done = subprocess.run([sys.executable, '-c', probe], cwd=SITE, env=site.environment(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['simple'] and not server_pids(site)
    done = subprocess.run([sys.executable, '-c', probe], cwd=SITE,
                          env={**site.environment(), 'COLDOC_TASKS_AUTOSTART': 'all'},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['coldoc'] and len(server_pids(site)) == 1
    # 0.2's keyword in the other variable still forbids it
    site.manage('coldoc_tasks', '--subcmd', 'stop')
    done = subprocess.run([sys.executable, '-c', probe], cwd=SITE,
                          env={**site.environment(), 'COLDOC_TASKS_AUTOSTART': 'all',
                               'COLDOC_TASKS_AUTOSTART_OPTIONS': 'noautostart'},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ['simple'] and not server_pids(site), done.stderr


def test_manage_subcmd_forms(coldoc_shaped_site):
    site = coldoc_shaped_site
    done = site.manage('coldoc_tasks', '--subcmd', 'ping')
    assert done.returncode != 0
    done = site.manage('coldoc_tasks', '--subcmd', 'autostart')
    assert done.returncode == 0 and 'running (pid' in done.stdout, done.stderr
    pid = server_pids(site)
    assert len(pid) == 1
    for subcmd in ('ping', 'status', 'test'):
        done = site.manage('coldoc_tasks', '--subcmd', subcmd)
        assert done.returncode == 0, f'{subcmd}: {done.stdout}\n{done.stderr}'
    assert 'pong from pid' in site.manage('coldoc_tasks', 'ping').stdout
    done = site.manage('coldoc_tasks', '--subcmd', 'shutdown')
    assert done.returncode == 0, done.stderr
    assert not server_pids(site)
    done = site.manage('coldoc_tasks', '--subcmd', 'stop', 'ping')
    assert done.returncode != 0 and 'differ' in done.stderr
