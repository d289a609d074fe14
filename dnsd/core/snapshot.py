"""An immutable picture of the names dnsd serves, swapped in whole on every store change.

Everything a query needs is computed ahead of time (by ``dnsd.core.builder``), so
that answering is a dictionary lookup and a byte join:

* a *scope* per source: the names of the networks that source may see, keyed
  by the lower-cased wire form of the name, each with an *entry* of ready-made
  answer records (see ``Entry``; ``lookup`` picks the records of a question);
* which scope a client address gets (a container sees all its DNS-enabled
  networks: its address maps to the slot of its scope in ``scopes``) and which
  one an address that is no container gets (the network of the gateway it
  asked, if the address lies in that network's subnets: issue 24 item 1), and
  the subnets outside of which dnsd refuses to serve;
* the upstream servers configured on containers and networks.

Answer records start with the compression pointer 0xC00C, which points at the
question right after the 12-byte header, so one record fits every spelling of
the name and every query.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import NamedTuple

from dnsd.core.records import ServedNetwork
from dnsd.core.wire import A_IN, AAAA_IN, ANY_IN, PTR_IN, encode_name, header_counts, reverse_name_address
from netcore.model import parse_dns_server as parse_upstream  # noqa: F401  (the stored format has one home)

HOST_NAME = "host.netcore.internal"  # the gateway of the asking container's network (issue 16)
# what Docker Desktop and Podman call the host in /etc/hosts (host.docker.internal, host.containers.internal)
HOST_ALIASES = ("host.docker.internal", "host.containers.internal")


def host_names(aliases: bool = True) -> frozenset[bytes]:
    """The wire forms of the host's own name, with Docker's and Podman's aliases if ``aliases``."""
    return frozenset(encode_name(name) for name in (HOST_NAME, *(HOST_ALIASES if aliases else ())))


MAX_UPSTREAMS = 3  # servers in one list of upstreams: resolv.conf's MAXNS, as many as a libc asks
SERVED_SOURCES_CACHE = 4096  # distinct non-container source addresses remembered per snapshot



class Upstream(NamedTuple):
    """An upstream DNS server: where it listens, and the network namespace it is asked from.

    ``netns`` names a namespace under /run/netns; empty: dnsd's own (the
    gateway namespace, or the host's in host mode). A loopback server
    (127.0.0.0/8, ::1) given as a container's --dns is a resolver inside that
    container (a consul agent, a local dnsmasq), as Docker keeps it
    (moby/libnetwork#1595): it is asked from the container's namespace. A
    loopback server given on a network, or as dnsd's --upstream, is asked from
    dnsd's own namespace, as aardvark-dns asks a network's dns_servers from
    the host.
    """

    address: str
    port: int
    netns: str = ""


def is_loopback(address: str) -> bool:
    """Whether an IP address (as ``parse_upstream`` gives it) is a loopback one, IPv4-mapped ones included."""
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)
    return parsed.is_loopback or (mapped is not None and mapped.is_loopback)

Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


# The answer records of one type: a lone record as its bytes, two or more as a RecordSet. Most names have one
# record of one type, so their entry is that record itself: tens of bytes a name rather than two dicts and a set.
Records = "bytes | RecordSet"
# A name's records: one type's records as they are (answering that type, and ANY), or several types in a dict
# keyed by the type and class of the question, ANY_IN included.
Entry = "bytes | RecordSet | dict[bytes, bytes | RecordSet]"
Names = dict[bytes, Entry]  # lower-cased wire name -> entry


def normalize_address(text: str) -> str:
    """The spelling sockets report for an address (inet_ntop's), so dict keys match what recvfrom gives."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, text))


class RecordSet:
    """Two or more answer records of one type for one name, as wire bytes that follow the question.

    A and AAAA sets rotate: ``rotation_slot`` indexes the answerer's turn
    counters and ``doubled`` holds the records twice, so each rotation is one
    slice. A set keeps its slot for as long as it lives, across snapshots; a
    slot freed by a set that is gone may be given to a new one. Sets of other
    types have the slot -1 and never rotate.
    """

    __slots__ = ("wire", "doubled", "count", "record_size", "header_counts", "rotation_slot", "type_class")

    def __init__(self, records: tuple[bytes, ...], rotation_slot: int):
        self.type_class = records[0][2:6]
        self.wire = b"".join(records)
        self.count = len(records)
        self.record_size = len(records[0])
        self.header_counts = header_counts(self.count)
        self.rotation_slot = rotation_slot
        self.doubled = self.wire * 2 if rotation_slot >= 0 else b""


def lookup(entry: Entry, question_type: bytes) -> Records | None:
    """The records of a name's entry that answer a question of this type and class; None means NODATA."""
    if entry.__class__ is dict:
        return entry.get(question_type)
    own_type = entry[2:6] if entry.__class__ is bytes else entry.type_class
    return entry if own_type == question_type or question_type == ANY_IN else None


def records_in(entry: Entry) -> tuple[Records, ...]:
    """Each type's records of an entry once (ANY's are one of them)."""
    if entry.__class__ is dict:
        return tuple(records for type_class, records in entry.items() if type_class != ANY_IN)
    return (entry,)


def entry_of(records_by_type: dict[bytes, Records]) -> Entry:
    """The entry of a name with these records per type; ANY gets one RRset, not an expansion (RFC 8482):
    PTR's, else A's, else AAAA's."""
    if len(records_by_type) == 1:
        return next(iter(records_by_type.values()))
    entry = dict(records_by_type)
    any_records = entry.get(PTR_IN) or entry.get(A_IN) or entry.get(AAAA_IN)
    if any_records is not None:
        entry[ANY_IN] = any_records
    return entry


class Scope:
    """What one source sees: the names of its networks, and where its other questions go.

    A name NAME.NETWORK is NAME as that network alone has it. Those are not
    keys of ``names`` (that would double the names of every container): they
    are looked up in ``qualified``, NETWORK's own names (keyed by the
    lower-cased wire form of NETWORK), when the name as a whole is not found.

    A source on several networks asks through the gateways of each. ``by_listener``
    maps the gateway address of each of those networks that has inter-container
    communication on (Docker's ``enable_icc``) to a ``PreferringScope``: a name
    that network has is answered from that network alone, so the address given
    is one on the network the query arrived on (moby/moby#46162). None for
    sources on one network.
    """

    __slots__ = ("names", "networks", "dns", "qualified", "by_listener")

    def __init__(self, names: Names, networks: tuple[ServedNetwork, ...], dns: tuple[Upstream, ...] = (),
                 qualified: dict[bytes, Names] | None = None, by_listener: dict[str, Scope] | None = None):
        self.names = names
        self.networks = networks  # DNS-enabled, in the order of the container's interfaces
        self.dns = dns  # the container's own --dns servers
        self.qualified = qualified or {}  # lower-cased wire name of each of its networks -> that network's own names
        self.by_listener = by_listener

    def for_listener(self, listener_ip: str) -> Scope:
        """The scope a query that arrived at ``listener_ip`` gets (see the class docstring)."""
        if self.by_listener is None:
            return self
        return self.by_listener.get(listener_ip, self)

    def entry(self, name: bytes) -> Entry | None:
        """The entry of a lower-cased wire name: the name itself, else NAME.NETWORK (longest NETWORK first)."""
        entry = self.names.get(name)
        return entry if entry is not None else self.qualified_entry(name)

    def _qualified_entry(self, name: bytes) -> Entry | None:
        """The entry of NAME.NETWORK: NAME in NETWORK's own names, if NETWORK is one of this scope's."""
        if not self.qualified or len(name) == 1:  # no network names, or the root
            return None
        offset = name[0] + 1
        while name[offset]:
            own = self.qualified.get(name[offset:])
            if own is not None:
                entry = own.get(name[:offset] + b"\x00")
                if entry is not None:
                    return entry
            offset += name[offset] + 1
        return None

    qualified_entry = _qualified_entry  # what a name not found in ``names`` is looked up as

    @property
    def may_forward(self) -> bool:
        """Sources on internal networks only get no forwarding: they have no way out either."""
        return any(not network.internal for network in self.networks)


class PreferringScope(Scope):
    """The scope of a multi-network source asking through one network's gateway.

    ``names`` are that network's own names; a name it lacks is looked up in
    ``everywhere``, the union of all the source's networks (where, as the
    builder makes it, a name that a network with inter-container communication
    has never carries the addresses it has on networks without), then as
    NAME.NETWORK. So a name leads to an address the source can reach.
    """

    __slots__ = ("everywhere",)

    def __init__(self, names: Names, everywhere: Names, networks: tuple[ServedNetwork, ...],
                 dns: tuple[Upstream, ...] = (), qualified: dict[bytes, Names] | None = None):
        super().__init__(names, networks, dns, qualified)
        self.everywhere = everywhere

    def qualified_entry(self, name: bytes) -> Entry | None:
        """The entry of a name the asked network lacks: from all the source's networks, else NAME.NETWORK."""
        entry = self.everywhere.get(name)
        return entry if entry is not None else self._qualified_entry(name)


class HostScope(Scope):
    """What the gateway namespace itself sees (the host, outside sandbox mode): every served network.

    NAME.NETWORK always; a bare NAME when one network alone has it (a name that
    two networks hold is ambiguous from outside, so NXDOMAIN-or-forward, as any
    name not held); NAME.SUFFIX, for a suffix every network shares (aardvark-dns's
    search domain: ``shared``), as that bare NAME. Looked up network by network:
    only queries from the gateway namespace come here, and they are few.
    """

    __slots__ = ("own_names", "shared")

    def __init__(self, own_names: tuple[Names, ...], networks: tuple[ServedNetwork, ...], qualified: dict[bytes, Names],
                 shared: tuple[bytes, ...] = ()):
        super().__init__({}, networks, (), qualified)
        self.own_names = own_names  # each served network's own names
        self.shared = shared  # wire suffixes several networks qualify their own names with

    def qualified_entry(self, name: bytes) -> Entry | None:
        """The entry of a bare name one network alone has, else of NAME.NETWORK, else of NAME.SUFFIX as NAME."""
        found = self._bare_entry(name)
        if found is None:
            found = self._qualified_entry(name)
        for suffix in self.shared:
            if found is not None:
                break
            bare = name_under(name, suffix)
            if bare is not None:
                found = self._bare_entry(bare)
        return found

    def _bare_entry(self, name: bytes) -> Entry | None:
        found = None
        for names in self.own_names:
            entry = names.get(name)
            if entry is not None:
                if found is not None:
                    return None
                found = entry
        return found


class Snapshot:
    """Never changed once made; swap in a new one on every change (``dnsd.core.builder`` makes them)."""

    def __init__(self, clients: dict[str, int], scopes: tuple[Scope | None, ...], listeners: dict[str, Scope],
                 served_subnets: tuple[Subnet, ...], network_upstreams: dict[str, tuple[Upstream, ...]],
                 rotation_slots: int, host_entries: dict[str, Entry] | None = None,
                 listener_subnets: dict[str, tuple[Subnet, ...]] | None = None):
        self.clients = clients  # container address -> the slot of its scope in ``scopes``
        self.scopes = scopes  # per slot: a scope shared by containers on the same networks with the same --dns
        self.listeners = listeners  # gateway address -> the scope of that gateway's network
        self.served_subnets = served_subnets
        self.network_upstreams = network_upstreams  # network id -> its --dns servers
        self.rotation_slots = rotation_slots  # every record set's rotation_slot is below this
        self.host_entries = host_entries or {}  # gateway address -> its network's gateways as A and AAAA records
        # other addresses of the gateway namespace (dnsd.io.local_addresses): set by the reloader before serving
        self.host_sources: frozenset[str] = frozenset()
        # gateway address -> the subnets of its network (the builder's, shared by its snapshots)
        self.listener_subnets = listener_subnets or {}
        # whether a source that is no container lies in the subnets of the network of the gateway it asked; a
        # plain function, so no reference cycle keeps an old snapshot alive after the swap
        self.serves_source = functools.lru_cache(maxsize=SERVED_SOURCES_CACHE)(
            functools.partial(_in_listener_subnets, self.listener_subnets))

    @classmethod
    def empty(cls) -> Snapshot:
        return cls({}, (), {}, (), {}, 0)

    @property
    def listen_addresses(self) -> frozenset[str]:
        return frozenset(self.listeners)

    def scope_of(self, client_ip: str, listener_ip: str) -> Scope | None:
        """The scope a query gets: its container's, else the asked network's; None means REFUSED."""
        slot = self.clients.get(client_ip)
        if slot is not None:
            return self.scopes[slot].for_listener(listener_ip)
        return self.stranger_scope(client_ip, listener_ip)

    def stranger_scope(self, client_ip: str, listener_ip: str) -> Scope | None:
        """The scope of a source that is no container: the gateway namespace itself (its source is a gateway
        address, or another address of that namespace: ``host_sources``) sees every network (``host_scope``);
        any other, the asked network's, if the source lies in that network's subnets; else None (REFUSED).

        A source of one network's subnet asking another network's gateway is that other network's client no
        more than a stranger is: answering it as one gave an internal network's container a way out through
        a spare address of its own subnet (issue 24 item 1, the class of Docker's CVE-2024-29018). Which
        interface a query arrived on dnsd does not see; netcore's firewall drops a query to a gateway from
        any interface but that network's own (netcore.nftables).
        """
        scope = self.listeners.get(listener_ip)
        if scope is None:
            return None
        if client_ip in self.listeners or client_ip in self.host_sources:
            return self.host_scope
        if not self.serves_source(client_ip, listener_ip):
            return None
        return scope

    @functools.cached_property
    def host_scope(self) -> HostScope:
        """The scope of the gateway namespace itself: every served network's names (see ``HostScope``)."""
        by_network = {scope.networks[0].id: scope for scope in self.listeners.values()}
        networks = tuple(scope.networks[0] for scope in by_network.values())
        qualified: dict[bytes, Names] = {}
        shared = set()  # a suffix two networks qualify with (a search domain) names no one network
        for scope in by_network.values():
            for suffix, names in scope.qualified.items():
                if qualified.setdefault(suffix, names) is not names:
                    shared.add(suffix)
        for suffix in shared:
            del qualified[suffix]
        return HostScope(tuple(scope.names for scope in by_network.values()), networks, qualified, tuple(shared))

    def host_entry(self, listener_ip: str) -> Entry | None:
        """The entry of the host's own name (``HOST_NAME``) asked at ``listener_ip``: the gateway addresses
        (A, AAAA) of that listener's network."""
        return self.host_entries.get(listener_ip)

    def upstreams_for(self, scope: Scope, default: tuple[Upstream, ...],
                      limit: int) -> tuple[tuple[Upstream, ...], ...]:
        """A source's upstream servers as lists to ask one after the other; the gateway it asked plays no part.

        One order per client, so that its answer cannot depend on which of its
        name servers it asked (musl asks them all at once and keeps the first
        reply: containers/netavark#1348). A container's own --dns is its one
        list. Else each of its networks that is not internal, in interface
        order, gives its --dns, or ``default`` (dnsd's --upstream) if it names
        none. Each list holds at most ``limit`` servers (resolv.conf's MAXNS);
        a server already in an earlier list is left out of a later one, and a
        list left empty is dropped. Empty: no way out (internal networks only,
        or nothing configured). ``dnsd.upstream.forward`` falls through to the next list
        on NXDOMAIN.
        """
        if not scope.may_forward:
            return ()
        if scope.dns:
            return (scope.dns[:limit],)
        lists = []
        seen: set[Upstream] = set()
        for network in scope.networks:
            if network.internal:
                continue
            servers = tuple(server for server in (self.network_upstreams[network.id] or default)[:limit]
                            if server not in seen)
            if servers:
                seen.update(servers)
                lists.append(servers)
        return tuple(lists)

    def owns_reverse_name(self, name: bytes) -> bool:
        """Whether a lower-cased wire name is the reverse name of an address in a served subnet."""
        if not name.endswith(b"\x04arpa\x00"):  # most names forwarded: no reverse name at all
            return False
        address = reverse_name_address(name)
        return address is not None and any(address in subnet for subnet in self.served_subnets)


def name_under(name: bytes, suffix: bytes) -> bytes | None:
    """The wire name ``name`` (lower-cased) without ``suffix`` (a wire name) if it ends with it at a label, else None.

    ``b"\x02a2\x03dns\x06podman\x00"`` under ``b"\x03dns\x06podman\x00"`` is ``b"\x02a2\x00"``; a name equal to
    ``suffix`` has no name left: None.
    """
    if len(name) <= len(suffix) or not name.endswith(suffix):
        return None
    end, offset = len(name) - len(suffix), 0
    while offset < end:
        offset += name[offset] + 1
    return name[:end] + b"\x00" if offset == end else None


def upstreams_changed(old: Snapshot, new: Snapshot) -> bool:
    """Whether a network's or a container's upstream servers differ between two snapshots (the forwarded-answer
    cache is flushed then: ``dnsd.upstream.cache``)."""
    return (old.network_upstreams != new.network_upstreams
            or {scope.dns for scope in old.scopes if scope is not None}
            != {scope.dns for scope in new.scopes if scope is not None})


def _in_listener_subnets(by_listener: dict[str, tuple[Subnet, ...]], address: str, listener_ip: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in subnet for subnet in by_listener.get(listener_ip, ()))
