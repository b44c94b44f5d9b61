"""Which host names a request to the standalone page may give (its
``Host`` header), against DNS rebinding: a page of another site whose name
is made to resolve to 127.0.0.1 reaches a server on the loopback interface,
but its requests carry that site's name.  A page bound on the loopback
interface answers only requests naming a loopback address (``localhost``,
a name under ``.localhost``, a loopback IP) or the address it is bound to;
the port is not compared (a forwarded port may differ).  A page bound
elsewhere may be behind a proxy under any name: it takes any.
"""

from __future__ import annotations

import ipaddress

__all__ = ['host_name', 'host_allowed']


def host_name(host: str) -> str:
    """The name in a ``Host`` header's value: without its port, its
    brackets (an IPv6 address) or a final dot, in lower case."""
    host = host.strip().lower()
    if host.startswith('['):
        name, bracket, rest = host[1:].partition(']')
        return name if bracket and (not rest or rest.startswith(':')) else host
    if host.count(':') == 1:
        host = host.partition(':')[0]
    return host.rstrip('.')


def _is_loopback(name: str) -> bool:
    if name == 'localhost' or name.endswith('.localhost'):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(host: str | None, bound: str) -> bool:
    """Whether a request whose ``Host`` header is ``host`` (None: none)
    may be answered by a page bound on the IP address ``bound``."""
    if not ipaddress.ip_address(bound).is_loopback:
        return True
    if not host:
        return False
    name = host_name(host)
    return _is_loopback(name) or name == bound.lower()
