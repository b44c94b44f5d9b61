"""Memory of process trees, read from ``/proc``: RSS and PSS.

PSS (proportional set size) splits each shared page among the processes
that map it, so the PSS of a server and the workers it forked adds up to
what the tree really costs, where RSS would count shared pages once per
process.
"""

from __future__ import annotations

import os


def descendants(pid: int) -> list[int]:
    """``pid`` and every live process below it (scanning ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat', 'rb') as stream:
                stat = stream.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        fields = stat[stat.rindex(b')') + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def rollup(pid: int) -> dict[str, int]:
    """``Rss`` and ``Pss`` of one process in bytes (zeros if it is gone)."""
    result = {'rss': 0, 'pss': 0}
    try:
        with open(f'/proc/{pid}/smaps_rollup') as stream:
            for line in stream:
                key, _, rest = line.partition(':')
                if key in ('Rss', 'Pss'):
                    result[key.lower()] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return result


def tree_memory(pids: list[int]) -> dict[str, int]:
    """RSS and PSS summed over ``pids`` and all their descendants."""
    seen: set[int] = set()
    total = {'rss': 0, 'pss': 0, 'processes': 0}
    for root in pids:
        for pid in descendants(root):
            if pid in seen:
                continue
            seen.add(pid)
            one = rollup(pid)
            if one['rss']:
                total['rss'] += one['rss']
                total['pss'] += one['pss']
                total['processes'] += 1
    return total
