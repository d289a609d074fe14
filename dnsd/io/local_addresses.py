"""The addresses of the network namespace dnsd serves from: who counts as the gateway namespace itself.

A query from the gateway namespace (the host, outside sandbox mode) to a
gateway address does not always carry that gateway as its source: netcore's
masquerade rule (``oifname != BRIDGE ip saddr SUBNET masquerade``, as Docker
has it) also matches such a query on its way through ``lo`` and rewrites its
source to another address of the namespace. So dnsd takes any address of its
own namespace, loopback aside, as the gateway namespace (``Snapshot.stranger_scope``).

Read from /proc/net/fib_trie (IPv4: the ``/32 host LOCAL`` entries) and
/proc/net/if_inet6 (IPv6), both of the namespace of the reading process; the
parsers are pure.
"""

from __future__ import annotations

import ipaddress

FIB_TRIE = "/proc/net/fib_trie"
IF_INET6 = "/proc/net/if_inet6"


def parse_fib_trie(text: str) -> set[str]:
    """The IPv4 addresses /proc/net/fib_trie lists as ``/32 host LOCAL``, loopback ones left out."""
    found = set()
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|-- "):
            previous = stripped[4:]
        elif stripped == "/32 host LOCAL" and previous and not previous.startswith("127."):
            found.add(previous)
    return found


def parse_if_inet6(text: str) -> set[str]:
    """The IPv6 addresses /proc/net/if_inet6 lists, as ``inet_ntop`` spells them; loopback and link-local out."""
    found = set()
    for line in text.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            address = ipaddress.IPv6Address(int(fields[0], 16))
            if not (address.is_loopback or address.is_link_local):
                found.add(str(address))
    return found


def local_addresses() -> frozenset[str]:
    """The addresses of this process's network namespace (see the module's docstring); empty if unreadable."""
    found: set[str] = set()
    for path, parse in ((FIB_TRIE, parse_fib_trie), (IF_INET6, parse_if_inet6)):
        try:
            with open(path) as file:
                found |= parse(file.read())
        except OSError:
            continue
    return frozenset(found)
