"""The rule for queue names: a task runs on the queue its name declares; a
name nobody declared is refused at run(), naming the declared queues, unless
the server declares ``*``: then every other name is accepted and all of them
share that one limit."""

from __future__ import annotations

import pytest

from coldoc_tasks.coldoc.client import get_connection
from coldoc_tasks.coldoc.infofile import read_infofile
from coldoc_tasks.coldoc_tasks import bind_fork_class, status
from coldoc_tasks.exceptions import ColdocTasksProcessLookupError, ColdocTasksUsageError
from tests import jobs
from tests.helpers_coldoc import wait_until


def test_a_name_nobody_declared_is_refused_at_run(make_server):
    server = make_server(queues=('default:2:reuse', 'pdf:1:fresh'))
    F = bind_fork_class(server.infofile)
    f = F(queue='pfd')  # a typo
    with pytest.raises(ColdocTasksUsageError, match=r"runs no queue 'pfd' \(its queues: default, pdf\)"):
        f.run(jobs.add, 1, 2)
    assert status(server.infofile)['tasks'] == []
    for name in ('pdf', 'default', None, True):
        g = F(queue=name)
        g.run(jobs.add, 1, 2)
        assert g.wait(timeout=30) == 3


def test_the_server_refuses_it_too(make_server):
    # a client that does not check (another version, or one that lies)
    server = make_server()
    info = read_infofile(server.infofile)
    connection = get_connection(info['socket'], info['authkey'])
    connection.queues = []  # as from a server that did not say
    f = bind_fork_class(server.infofile)(queue='nowhere')
    f.run(jobs.add, 1, 2)
    with pytest.raises(ColdocTasksProcessLookupError, match="refused: the task server runs no queue 'nowhere'"):
        f.wait(timeout=30)
    counters = status(server.infofile)['counters']
    assert counters['cancelled'] == 1, counters


def test_any_name_is_accepted_with_star_and_they_share_its_limit(make_server, rendezvous):
    server = make_server(queues=('default:1:reuse', '*:2:reuse'))
    F = bind_fork_class(server.infofile)
    forks = []
    for j in range(20):
        f = F(queue=f'user{j}')
        f.run(jobs.rendezvous, rendezvous.address, j)
        forks.append(f)

    def star():
        return next(q for q in status(server.infofile)['queues'] if q['name'] == '*')

    arrived = [rendezvous.accept() for _ in range(2)]
    wait_until(lambda: star()['queued'] == 18, what='18 tasks queued behind the 2 running')
    assert star()['running'] == 2 and star()['concurrency'] == 2
    names = {t['queue'] for t in status(server.infofile)['tasks']}
    assert names == {f'user{j}' for j in range(20)}  # each task keeps its own name
    for conn, _ in arrived:
        rendezvous.release(conn)
    for _ in range(18):
        conn, _ = rendezvous.accept()
        assert star()['running'] <= 2
        rendezvous.release(conn)
    assert [f.wait(timeout=30) for f in forks] == list(range(20))


def test_django_queues_setting(tmp_path):
    pytest.importorskip('django')
    import types

    from coldoc_tasks import django_support

    def conf(value):
        return django_support.read_settings(types.SimpleNamespace(
            SETTINGS_MODULE='s', COLDOC_TASKS_INFOFILE=tmp_path / 'info', COLDOC_TASKS_QUEUES=value))

    queues = conf(['default:3', 'pdf:1:fresh', '*:2']).queues
    assert [(q.name, q.concurrency, q.mode) for q in queues] == [
        ('default', 3, 'reuse'), ('pdf', 1, 'fresh'), ('*', 2, 'reuse')]
    assert [q.name for q in conf('pdf:1,*:2').queues] == ['pdf', '*']
    for bad, said in [(['pdf:0'], 'concurrency'), (['pdf:1', 'pdf:2'], 'twice'), (3, 'list of queue specs'),
                      (['pdf:1:slow'], 'mode')]:
        with pytest.raises(django_support.ColdocTasksSettingsError, match=said):
            conf(bad)


def test_a_django_site_declares_its_queues(django_site):
    django_site.configure(COLDOC_TASKS_AUTOSTART=None, COLDOC_TASKS_QUEUES=['default:1', 'pdf:1:fresh'])
    started = django_site.manage('coldoc_tasks', 'daemon')
    assert 'started' in started.stdout
    names = [q['name'] for q in status(django_site.infofile)['queues']]
    assert sorted(names) == ['default', 'pdf']
    django_site.configure(COLDOC_TASKS_AUTOSTART=None, COLDOC_TASKS_QUEUES=['pdf:0'])
    done = django_site.manage('check', check=False)
    assert done.returncode != 0 and 'coldoc_tasks.E008' in done.stderr and 'concurrency' in done.stderr
