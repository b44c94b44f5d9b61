"""The package's shape: no import circle, modules and classes of a readable
size, and every import path that users, 0.2 or old pickles name still works."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'coldoc_tasks'

#: Old module paths kept for the imports and pickles that name them.
OLD_PATHS = ['coldoc_tasks.client', 'coldoc_tasks.daemon', 'coldoc_tasks.coldoc_stop', 'coldoc_tasks.coldoc_cli',
             'coldoc_tasks.coldoc_tasks', 'coldoc_tasks.server', 'coldoc_tasks.server.protocol',
             'coldoc_tasks.server.infofile', 'coldoc_tasks.server.legacy', 'coldoc_tasks.server.safefiles',
             'coldoc_tasks.server.options', 'coldoc_tasks.server.main', 'coldoc_tasks.server.server',
             'coldoc_tasks.server.workers', 'coldoc_tasks.server.worker_process', 'coldoc_tasks.server.tasks',
             'coldoc_tasks.server.channel', 'coldoc_tasks.celery_tasks', 'coldoc_tasks.celery_app',
             'coldoc_tasks.celery_worker', 'coldoc_tasks.celery_claims', 'coldoc_tasks.celery_control',
             'coldoc_tasks.celery_waiter', 'coldoc_tasks.celery_cli', 'coldoc_tasks.django_support',
             'coldoc_tasks.checks', 'coldoc_tasks.django_cli']


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and 'TYPE_CHECKING' in ast.unparse(node.test):
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, anywhere in it
    (in functions too; not under ``if TYPE_CHECKING``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob('*.py')}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        for node in ast.walk(tree):
            if _type_checking_only(node, parents):
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    anchor = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                    base = '.'.join(anchor + ([node.module] if node.module else []))
                targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition('.')[0]
                if target and target != name and target != 'coldoc_tasks':
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle():
    assert cycles(import_graph()) == []


if __name__ == '__main__':
    for component in cycles(import_graph()):
        print(' <-> '.join(component))


MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300


def test_modules_and_classes_are_of_a_readable_size():
    too_long = []
    for path in PACKAGE.rglob('*.py'):
        text = path.read_text()
        if text.count('\n') > MAX_MODULE_LINES:
            too_long.append(f'{module_name(path)}: {text.count(chr(10))} lines')
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_long.append(f'{module_name(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines')
    assert too_long == []


def test_the_old_import_paths_still_work():
    code = ('import importlib, sys\n'
            f'for name in {OLD_PATHS!r}:\n'
            '    importlib.import_module(name)\n'
            'import coldoc_tasks.coldoc_tasks as CT\n'
            'import coldoc_tasks.celery_tasks as CL\n'
            'import coldoc_tasks.django_support as DS\n'
            'from coldoc_tasks.coldoc.fork import ColdocFork\n'
            'assert CT.ColdocFork is ColdocFork and CT.fork_class is ColdocFork\n'
            'for name in ("ping", "status", "shutdown", "server_pid", "test", "tasks_daemon_autostart",\n'
            '             "tasks_daemon_django_autostart", "tasks_server_readinfo", "task_server_check",\n'
            '             "tasks_server_start", "tasks_daemon_start", "get_infofile",\n'
            '             "ColdocTasksProcessLookupError"):\n'
            '    assert callable(getattr(CT, name)), name\n'
            'for name in ("fork_class", "tasks_daemon_autostart", "shutdown", "ping", "test", "status", "daemon",\n'
            '             "celery_server_check", "CeleryTaskPool"):\n'
            '    assert callable(getattr(CL, name)), name\n'
            'for name in ("read_settings", "autostart", "get_fork_class", "server_main", "install_database_hooks"):\n'
            '    assert callable(getattr(DS, name)), name\n'
            # a moved module is the same module under both names: no second copy of its state
            'import coldoc_tasks.client, coldoc_tasks.coldoc.client\n'
            'assert coldoc_tasks.client is coldoc_tasks.coldoc.client\n'
            'import coldoc_tasks.server.worker_process as old, coldoc_tasks.coldoc.server.worker_process as new\n'
            'assert old is new\n'
            'print("ok")\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == 'ok', done.stderr


def test_the_client_does_not_load_the_server():
    code = ('import sys, coldoc_tasks.coldoc_tasks, coldoc_tasks.coldoc.control, coldoc_tasks.task_utils\n'
            'print(sorted(m for m in sys.modules if m.startswith("coldoc_tasks.coldoc.server.")))\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == '[]', done.stdout + done.stderr


#: Pickles made by the version before this layout (protocol 4, base85).
OLD_PICKLES = {
    'coldoc_fork': 'fCQE9000000001t8Dnp3WN%|%bYXLAb1q|VY-Dd^Uvyz}Yjc#02w!q#Vs&Y3WR#PXeUvDS2z7I1UuJJ|Ym|wM2Xtv|Wp8zKlunEVadl;NWt5BuWMyVyb!>E$j0bdKb8BB|WRy;f2xDzzUv6P-Wt2{g31xU=WpH$9Z*G)Mj0tpdVPj=tVPk8QPK*a%X>M$3Ze^5-j0j(Eb#!BIZDo{Bj0azHXkl_?WRy;f2x)F+Z)Rz1Wt5B&FK%ycWq4_GbY*UIFKKROZ<LG(Utwfqa%FRKlunEYUtx80XlrG8lunEVUvPDEXp~NMg_Kg1E&',  # noqa: E501
    'coldoc_class': 'fCQCE000000001t8Dnp3WN%|%bYXLAb1q|VY-Dd^Uvyz}Yjc#04`OL<WM5`)a%*2>Y+-YAl#`T<5if3UZe@6Bb97~HbT4UcW^a^*lv0!~',  # noqa: E501
    'celery_fork': 'fCQED000000001t8Dnp3WN%|%bYXLAb1q|LY-MtJUvyz}Yjc#03PWXVWpa5&Z*pstlawielzo&aj0kmeWnX4*a%+@{j0bdSZDntDbd*kv1#xv{b!C)Jj0bdKb8BB|WRy;f2xDzzUv6P-Wt2{g31xU=WpH$9Z*G)Mj0tpdVPj=tVPk8QPK*a%X>M$3Ze^5-j0j(Eb#!BIZDo{Bj0azHXkl_?WRy;f3SVbwc4cl~VQ_GiPK*s-V`Xe*a(QEKZf0p`l#CoNZf|a7cxiKVWo~pYV`Xe*a(QEKZf0p`E^v92j0#_4VQg$)WMOn+lumVGE&',  # noqa: E501
    'celery_class': 'fCQCO000000001t8Dnp3WN%|%bYXLAb1q|LY-MtJUvyz}Yjc#04rXt1YhPn*VRLg|W^Zzola!1cFK%ycWq4_GbY*UIFJonFWpa6AZ*FF3XD)Dgl!cU1lr8',  # noqa: E501
    'simple_fork': 'fCQDr000000001t8Dnp3WN%|%bYXLAb1rjfZE$R5Uvyz}Yjc#03R7uqaBO8pZ*pstlawielzo&aj0kmeWnX4*a%+@{j0bdSZDntDbd*kv1#xv{b!C)Jj0bdKb8BB|WRy;f2xDzzUv6P-Wt2{g31xU=WpH$9Z*G)Mj0tpdVPj=tVPk8QPK*a%X>M$3Ze^5-j0j(Eb#!BIZDo{Bj0azHXkl_?WRy;f3SVz`Ze?;`aA{<eO$Ta>3SVPrX>4R)a%E<ePIY1~',  # noqa: E501
    'chooser': 'fCQCg000000001t7h`X1WN%|%bYXLAb1rmYb8BC9bZKmJl#C5RWpi{!Z*prxY+-YAl#`Swj1ezxZ*FCHX>)XCZgekcZf0+kPK*X)Z){|5W0Z^rb7^gGY-N;&lt(~b00000002&Olv0!~',  # noqa: E501
    'timeout_error': 'fCQC7000000001t7h`X1WN%|%bYXLAb1r3gV`Xr3X>V?Gl#CZcZ){|5V^m>tYjad-ZDntDbVYJ<Z*r8Al#B#yVRU7bg_Kg1E&',  # noqa: E501
    'start_error': 'fCQCA000000001t6Ju{|WN%|%bYXLAb1r0IWo>V6l#CTaZ){|5V^m>tYjaa{VRCdua&m8Sl#`T<4P<F#AZ~ATAaitKa&(l1lv0!~',  # noqa: E501
}


def test_old_pickles_still_load():
    import base64
    import pickle

    from coldoc_tasks import exceptions
    from coldoc_tasks.coldoc.fork import ColdocFork
    from coldoc_tasks.simple_tasks import SimpleFork
    from coldoc_tasks.task_utils import BestForkClass

    loaded = {name: pickle.loads(base64.b85decode(data)) for name, data in OLD_PICKLES.items()
              if not name.startswith('celery') or _celery_installed()}
    assert type(loaded['coldoc_fork']) is ColdocFork and loaded['coldoc_fork'].infofile == '/nonexistent/info'
    assert issubclass(loaded['coldoc_class'], ColdocFork)
    assert loaded['coldoc_class'].default_infofile == '/nonexistent/info'
    assert type(loaded['simple_fork']) is SimpleFork
    assert isinstance(loaded['chooser'], BestForkClass) and loaded['chooser'].preferences == ('coldoc', 'simple')
    assert isinstance(loaded['timeout_error'], exceptions.ColdocTasksTimeoutError)
    assert isinstance(loaded['start_error'], exceptions.ColdocTasksStartError)
    if _celery_installed():
        from coldoc_tasks.celery.fork import CeleryFork

        assert type(loaded['celery_fork']) is CeleryFork
        assert issubclass(loaded['celery_class'], CeleryFork)


def _celery_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec('celery') is not None


def test_exceptions_of_the_package_pickle():
    import pickle

    from coldoc_tasks import exceptions

    samples = [exceptions.UnsafePathError('/x', 'it is a link'), exceptions.ColdocTasksServerRunningError('/i', 3),
               exceptions.ColdocTasksLegacyServerRunningError('/i', 4),
               exceptions.LegacyInfofileError('old', {'pid': 1}, '/i'), exceptions.ColdocTasksStartError('no'),
               exceptions.ColdocTasksOptionError('bad')]
    for error in samples:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and copy.__dict__ == error.__dict__


def test_messages_are_checked_by_their_type():
    import pytest

    from coldoc_tasks.coldoc import messages
    from coldoc_tasks.exceptions import ColdocTasksProtocolError, ColdocTasksUnknownTaskError

    def header(message):
        return b''.join(message.encode())[8:]  # past the two lengths

    wait = messages.Wait(7, 'abc', None)
    assert messages.decode(header(wait)) == wait
    assert messages.decode(header(messages.Shutdown(1, 2))) == messages.Shutdown(1, 2)
    for bad in (b'["wait", true, "abc", null]', b'["wait", 7, "abc"]', b'["wait", 7, 3, null]',
                b'["frobnicate", 1]', b'["ping", 1, 2]', b'{"ping": 1}', b'["shutdown", 1, "soon"]'):
        with pytest.raises(ColdocTasksProtocolError):
            messages.decode(bad)
    with pytest.raises(ColdocTasksProtocolError, match='unexpected message'):
        messages.decode(header(messages.Ok(1, None)), messages.REQUESTS)
    error = messages.Error.of(3, ColdocTasksUnknownTaskError('gone'))
    assert isinstance(messages.decode(header(error)).exception(), ColdocTasksUnknownTaskError)
