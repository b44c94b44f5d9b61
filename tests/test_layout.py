"""The package's shape: no import circle, modules and classes of a readable
size, and every import path that users, 0.2 or old pickles name still works."""

from __future__ import annotations

import ast
import pathlib

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
