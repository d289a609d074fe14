"""An immutable picture of the names dnsd serves, built once per store change.

Everything a query needs is computed here, ahead of time, so that answering is
a dictionary lookup and a byte join:

* a *scope* per source: the names of the networks that source may see, keyed
  by the lower-cased wire form of the name, then by the 4-byte type and class
  of the question, giving a ``RecordSet`` of ready-made answer records;
* which scope a client address gets (a container sees all its DNS-enabled
  networks) and which one an address that is no container gets (the network of
  the gateway it asked), and the subnets outside of which dnsd refuses to serve;
* the upstream servers configured on containers and networks.

Answer records start with the compression pointer 0xC00C, which points at the
question right after the 12-byte header, so one record fits every spelling of
the name and every query.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable

from netcore.model import Container, Endpoint, Network

TYPE_A = 1
TYPE_PTR = 12
TYPE_AAAA = 28
TYPE_OPT = 41
TYPE_ANY = 255
CLASS_IN = 1

MAX_LABEL = 63
MAX_NAME = 255  # octets of a name in wire form, length bytes and root included
SERVED_SOURCES_CACHE = 4096  # distinct non-container source addresses remembered per snapshot
_HEX_NIBBLES = frozenset(b"%x" % value for value in range(16))

Upstream = tuple[str, int]  # (IP address, port)
DNS_PORT = 53


def type_and_class(rtype: int, rclass: int = CLASS_IN) -> bytes:
    """The 4 bytes that follow a name in a question or a record."""
    return rtype.to_bytes(2, "big") + rclass.to_bytes(2, "big")


A_IN = type_and_class(TYPE_A)
AAAA_IN = type_and_class(TYPE_AAAA)
PTR_IN = type_and_class(TYPE_PTR)
ANY_IN = type_and_class(TYPE_ANY)

Entry = dict[bytes, "RecordSet"]  # type and class of the question -> its answer records
Names = dict[bytes, Entry]  # lower-cased wire name -> entry


def encode_name(name: str) -> bytes | None:
    """The wire form of a dotted name (one trailing dot allowed), or None if it cannot be one."""
    if name.endswith("."):
        name = name[:-1]
    try:
        labels = name.encode("ascii").split(b".")
    except UnicodeEncodeError:
        return None
    wire = bytearray()
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL:
            return None
        wire.append(len(label))
        wire += label
    wire.append(0)
    return bytes(wire) if len(wire) <= MAX_NAME else None


def parse_upstream(text: str) -> Upstream:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` as (address, port); ValueError if it is none of them."""
    host, port = text.strip(), str(DNS_PORT)
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            host = ""
        port = rest[1:] or port
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise ValueError(f"bad DNS server {text!r}: expected IP, IP:PORT or [IPv6]:PORT") from None
    if not 0 < number < 65536:
        raise ValueError(f"bad DNS server {text!r}: port out of range")
    return str(address), number


def normalize_address(text: str) -> str:
    """The spelling sockets report for an address (inet_ntop's), so dict keys match what recvfrom gives."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_ntop(family, socket.inet_pton(family, text))


@functools.cache
def _header_counts(answer_count: int) -> bytes:
    """QDCOUNT=1, ANCOUNT, NSCOUNT=0: the header fields between the flags and ARCOUNT (one object per count)."""
    return b"\x00\x01" + answer_count.to_bytes(2, "big") + b"\x00\x00"


class RecordSet:
    """The answer records of one type for one name, as wire bytes that follow the question.

    A and AAAA sets of two or more records rotate: ``rotation_slot`` indexes the
    answerer's turn counters and ``doubled`` holds the records twice, so each
    rotation is one slice.
    """

    __slots__ = ("wire", "doubled", "count", "record_size", "header_counts", "rotation_slot")

    def __init__(self, records: tuple[bytes, ...], rotation_slot: int):
        self.wire = b"".join(records)
        self.count = len(records)
        self.record_size = len(records[0])
        self.header_counts = _header_counts(self.count)
        self.rotation_slot = rotation_slot
        self.doubled = self.wire * 2 if rotation_slot >= 0 else b""


class Scope:
    """What one source sees: the names of its networks, and where its other questions go."""

    __slots__ = ("names", "networks", "dns")

    def __init__(self, names: Names, networks: tuple[Network, ...], dns: tuple[Upstream, ...] = ()):
        self.names = names
        self.networks = networks  # DNS-enabled, in the order of the container's interfaces
        self.dns = dns  # the container's own --dns servers

    @property
    def may_forward(self) -> bool:
        """Sources on internal networks only get no forwarding: they have no way out either."""
        return any(not network.internal for network in self.networks)


class Snapshot:
    """Built whole by ``build`` and never changed after; swap in a new one on every change."""

    def __init__(self, clients: dict[str, Scope], listeners: dict[str, Scope],
                 served_subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
                 network_upstreams: dict[str, tuple[Upstream, ...]], rotation_keys: tuple[tuple[bytes, ...], ...]):
        self.clients = clients  # container address -> its scope
        self.listeners = listeners  # gateway address -> the scope of that gateway's network
        self.served_subnets = served_subnets
        self.network_upstreams = network_upstreams  # network id -> its --dns servers
        self.rotation_keys = rotation_keys  # per rotation slot: its records, stable across snapshots
        # whether a source that is no container lies in a served subnet; a plain function, so no reference cycle
        # keeps an old snapshot alive after the swap
        self.serves_source = functools.lru_cache(maxsize=SERVED_SOURCES_CACHE)(
            functools.partial(_in_subnets, served_subnets))

    @classmethod
    def empty(cls) -> Snapshot:
        return cls({}, {}, (), {}, ())

    @classmethod
    def build(cls, networks: Iterable[Network], containers: Iterable[Container],
              endpoints: Iterable[Endpoint], ttl: int = 0) -> Snapshot:
        return _SnapshotBuilder(ttl).build(list(networks), list(containers), list(endpoints))

    @property
    def listen_addresses(self) -> frozenset[str]:
        return frozenset(self.listeners)

    def scope_of(self, client_ip: str, listener_ip: str) -> Scope | None:
        """The scope a query gets: its container's, else the asked network's; None means REFUSED."""
        scope = self.clients.get(client_ip)
        if scope is None:
            scope = self.listeners.get(listener_ip)
            if scope is not None and not self.serves_source(client_ip):
                return None
        return scope

    def upstreams_for(self, scope: Scope, listener_ip: str) -> tuple[Upstream, ...]:
        """The container's --dns, else its network's --dns: the asked one if it is on it, else its first."""
        if scope.dns:
            return scope.dns
        asked = self.listeners.get(listener_ip)
        network = scope.networks[0]
        if asked is not None and any(own.id == asked.networks[0].id for own in scope.networks):
            network = asked.networks[0]
        return self.network_upstreams[network.id]

    def owns_reverse_name(self, name: bytes) -> bool:
        """Whether a lower-cased wire name is the reverse name of an address in a served subnet."""
        address = _address_of_reverse_name(name)
        return address is not None and any(address in subnet for subnet in self.served_subnets)


def _in_subnets(subnets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in subnet for subnet in subnets)


def _address_of_reverse_name(name: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    labels = []
    offset = 0
    while name[offset]:
        labels.append(name[offset + 1:offset + 1 + name[offset]])
        offset += 1 + name[offset]
    try:
        if len(labels) == 6 and labels[4:] == [b"in-addr", b"arpa"]:
            return ipaddress.IPv4Address(b".".join(reversed(labels[:4])).decode())
        if len(labels) == 34 and labels[32:] == [b"ip6", b"arpa"] and all(n in _HEX_NIBBLES for n in labels[:32]):
            return ipaddress.IPv6Address(int(b"".join(reversed(labels[:32])), 16))
    except ValueError:
        pass
    return None


def _interface_order(endpoint: Endpoint) -> tuple[int, str]:
    return len(endpoint.ifname), endpoint.ifname  # eth2 before eth10


def _packed_address(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _reverse_name(packed: bytes) -> bytes:
    if len(packed) == 4:
        labels = [str(octet).encode() for octet in reversed(packed)] + [b"in-addr", b"arpa"]
    else:
        labels = [nibble.encode() for nibble in reversed(packed.hex())] + [b"ip6", b"arpa"]
    return b"".join(len(label).to_bytes(1, "big") + label for label in labels) + b"\x00"


class _Holder:
    """One endpoint as the holder of names: its address records, and its entry when it holds a name alone."""

    __slots__ = ("a", "aaaa", "entry")

    def __init__(self, a: bytes | None, aaaa: bytes | None, entry: Entry):
        self.a = a
        self.aaaa = aaaa
        self.entry = entry


class _NetworkRecords:
    """The names of one network before they are frozen into entries."""

    __slots__ = ("holders", "pointers")

    def __init__(self):
        self.holders: dict[bytes, list[_Holder]] = {}  # lower-cased wire name -> endpoints holding it
        self.pointers: dict[bytes, list[bytes]] = {}  # reverse name -> PTR records


class _SnapshotBuilder:
    """Builds one Snapshot; equal record sets and entries are shared, so memory grows with containers, not names."""

    def __init__(self, ttl: int):
        self.ttl = ttl.to_bytes(4, "big")
        self.record_sets: dict[frozenset[bytes], RecordSet] = {}
        self.entries: dict[tuple[RecordSet | None, ...], Entry] = {}
        self.rotation_keys: list[tuple[bytes, ...]] = []

    def build(self, networks: list[Network], containers: list[Container], endpoints: list[Endpoint]) -> Snapshot:
        served = {network.id: network for network in networks if network.dns_enabled}
        containers_by_id = {container.id: container for container in containers}
        endpoints_by_container: dict[str, list[Endpoint]] = {}
        for endpoint in sorted(endpoints, key=_interface_order):
            if endpoint.container_id in containers_by_id:
                endpoints_by_container.setdefault(endpoint.container_id, []).append(endpoint)

        records_by_network = {network_id: _NetworkRecords() for network_id in served}
        for container_id, attached in endpoints_by_container.items():
            for endpoint in attached:
                if endpoint.network_id in served:
                    self._add_endpoint(records_by_network[endpoint.network_id], served[endpoint.network_id],
                                       containers_by_id[container_id], endpoint)

        names_by_view: dict[frozenset[str], Names] = {}

        def names_of(network_ids: frozenset[str]) -> Names:
            if network_ids not in names_by_view:
                names_by_view[network_ids] = self._freeze([records_by_network[i] for i in sorted(network_ids)])
            return names_by_view[network_ids]

        listeners = {}
        for network in served.values():
            scope = Scope(names_of(frozenset([network.id])), (network,))
            for gateway in (network.gateway, network.gateway6):
                if gateway:
                    listeners[normalize_address(gateway)] = scope

        clients = {}
        scopes: dict[tuple[tuple[str, ...], tuple[str, ...]], Scope] = {}
        for container_id, attached in endpoints_by_container.items():
            own_network_ids = dict.fromkeys(e.network_id for e in attached if e.network_id in served)
            if not own_network_ids:
                continue  # on the default bridge only: no names, and dnsd does not serve it
            scope_key = (tuple(own_network_ids), containers_by_id[container_id].dns)
            scope = scopes.get(scope_key)
            if scope is None:  # containers on the same networks with the same --dns share one
                scope = scopes[scope_key] = Scope(names_of(frozenset(own_network_ids)),
                                                  tuple(served[network_id] for network_id in own_network_ids),
                                                  _upstreams(scope_key[1]))
            for endpoint in attached:
                for address in (endpoint.ipv4, endpoint.ipv6):
                    if address:
                        clients[normalize_address(address)] = scope

        subnets = tuple(ipaddress.ip_network(subnet, strict=False) for network in served.values()
                        for subnet in (network.subnet, network.subnet6) if subnet)
        network_upstreams = {network.id: _upstreams(network.dns) for network in served.values()}
        return Snapshot(clients, listeners, subnets, network_upstreams, tuple(self.rotation_keys))

    def _add_endpoint(self, records: _NetworkRecords, network: Network, container: Container,
                      endpoint: Endpoint) -> None:
        """Add an endpoint's names, each also as NAME.NETWORK, and its reverse names to its network's records."""
        packed = [_packed_address(address) for address in (endpoint.ipv4, endpoint.ipv6) if address]
        a = next((self._record(A_IN, p) for p in packed if len(p) == 4), None)
        aaaa = next((self._record(AAAA_IN, p) for p in packed if len(p) == 16), None)
        holder = _Holder(a, aaaa, self._address_entry(a, aaaa))
        network_name = encode_name(network.name)
        short_names = dict.fromkeys(name.lower() for name in
                                    (container.name, container.hostname, container.short_id, *endpoint.aliases) if name)
        names = set()
        for short_name in short_names:
            wire = encode_name(short_name)
            if wire is not None:
                names.add(wire)
                if network_name is not None and len(wire) + len(network_name) - 1 <= MAX_NAME:
                    names.add(wire[:-1] + network_name)
        for name in names:
            records.holders.setdefault(name, []).append(holder)

        target = encode_name(f"{container.name}.{network.name}.")
        if target is not None:
            pointer = self._record(PTR_IN, target)
            for address in packed:
                records.pointers.setdefault(_reverse_name(address), []).append(pointer)

    def _record(self, type_class: bytes, rdata: bytes) -> bytes:
        return b"\xc0\x0c" + type_class + self.ttl + len(rdata).to_bytes(2, "big") + rdata

    def _freeze(self, networks: list[_NetworkRecords]) -> Names:
        """The names of a view over these networks: a name on several of them gets the union of their addresses."""
        holders: dict[bytes, list[_Holder]] = {}
        pointers: dict[bytes, list[bytes]] = {}
        for records in networks:
            for merged, found in ((holders, records.holders), (pointers, records.pointers)):
                for name, items in found.items():
                    merged[name] = merged[name] + items if name in merged else items
        names: Names = {}
        for name, found in holders.items():
            if len(found) == 1:
                names[name] = found[0].entry
            else:
                names[name] = self._address_entry(self._union(A_IN, [h.a for h in found if h.a]),
                                                  self._union(AAAA_IN, [h.aaaa for h in found if h.aaaa]))
        for name, found in pointers.items():
            pointer_set = self._record_set(PTR_IN, frozenset(found))
            names[name] = {**names.get(name, {}), PTR_IN: pointer_set, ANY_IN: pointer_set}
        return names

    @staticmethod
    def _union(type_class: bytes, records: list[bytes]) -> frozenset[bytes]:
        return frozenset(records)

    def _address_entry(self, a: bytes | frozenset[bytes] | None, aaaa: bytes | frozenset[bytes] | None) -> Entry:
        """The entry of a name with these A and AAAA records; ANY gets one RRset, not an expansion (RFC 8482)."""
        a_set = self._record_set(A_IN, frozenset([a]) if isinstance(a, bytes) else a) if a else None
        aaaa_set = self._record_set(AAAA_IN, frozenset([aaaa]) if isinstance(aaaa, bytes) else aaaa) if aaaa else None
        key = (a_set, aaaa_set)
        entry = self.entries.get(key)
        if entry is None:
            entry = {}
            if a_set is not None:
                entry[A_IN] = a_set
            if aaaa_set is not None:
                entry[AAAA_IN] = aaaa_set
            any_set = a_set or aaaa_set
            if any_set is not None:
                entry[ANY_IN] = any_set
            self.entries[key] = entry
        return entry

    def _record_set(self, type_class: bytes, found: frozenset[bytes]) -> RecordSet:
        record_set = self.record_sets.get(found)
        if record_set is None:
            records = tuple(sorted(found))
            rotation_slot = -1
            if len(records) > 1 and type_class in (A_IN, AAAA_IN):
                rotation_slot = len(self.rotation_keys)
                self.rotation_keys.append(records)
            record_set = self.record_sets[found] = RecordSet(records, rotation_slot)
        return record_set


def _upstreams(servers: Iterable[str]) -> tuple[Upstream, ...]:
    """Parse stored --dns servers; netcore validated them, so one that does not parse is skipped."""
    parsed = []
    for server in servers:
        try:
            parsed.append(parse_upstream(server))
        except ValueError:
            continue
    return tuple(parsed)
