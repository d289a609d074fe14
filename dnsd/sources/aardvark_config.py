"""Pure: aardvark-dns's config directory, as netavark writes it, turned into the records dnsd serves.

The format is aardvark-dns's (its ``config.md`` and ``src/config/mod.rs``;
netavark's ``src/dns/aardvark.rs`` writes it). One file per network, named
after the network; netavark 2.x names the file of an internal network
``NAME%int`` (netavark 1.4 marks none). In each file:

* the first line: the network's gateway addresses, comma-separated (dnsd
  listens on each), then optionally a space and the network's upstream
  servers, comma-separated (netavark 1.4 and 2.x alike);
* then one line per container: ``ID IPV4S IPV6S NAMES[ UPSTREAMS]``, each
  list comma-separated, IPV4S or IPV6S empty when the container has none,
  NAMES the container's name then its aliases, UPSTREAMS the container's own
  ``--dns`` servers.

aardvark-dns drops a whole file over one bad line. Here a bad container line
is one ``ConfigProblem`` and is skipped, the rest of the file is served; a bad
first line skips the file (it names no address to listen on). netavark ends
every line with a newline, and rewrites a file in place (truncate, then
write) when a container leaves: a last line without its newline is one being
written, and is skipped too (``dnsd.aardvark`` keeps serving a network whose
file it caught empty or half-written as it was).

The records (``dnsd.core.records``) hold what the files say and nothing
else: a ``NetworkRecord`` per file (internal ones marked, the first gateway of
each family as the address dnsd listens on, its upstreams as its ``dns``; no
subnet, which the file does not name: dnsd serves such a network by its
containers' addresses, ``dnsd.core.builder.served_range``), and per container
ID a ``ContainerRecord`` (the first name, the container's upstreams; no
hostname and no namespace, which the file does not name either) with an
``EndpointRecord`` per address pair on each network whose aliases are its
other names, as netavark wrote them, in the order of the files (no interface
name). ``NAME.dns.podman`` (aardvark-dns's ``--filter-search-domain``, which
Podman puts in containers' resolv.conf as their search domain) is answered as
``NAME`` by the rules of ``dnsd.core.dialect.podman``, not by names of its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from dnsd.core.records import ContainerRecord, EndpointRecord, NetworkRecord

PID_FILE = "aardvark.pid"  # aardvark-dns's pid file in the config directory, which netavark reads
INTERNAL_SUFFIX = "%int"  # netavark 2.x: the config file of an internal network is NAME%int
DEFAULT_SEARCH_DOMAIN = ".dns.podman"  # aardvark-dns's default --filter-search-domain


@dataclass(frozen=True)
class ConfigProblem:
    """One thing skipped while reading the directory: the file, the line number (1-based; 0: the whole file), why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"aardvark config {where}: {self.reason}, skipped"


@dataclass(frozen=True)
class ContainerEntry:
    """One container line: its ID (lower-cased, as aardvark-dns keys it), addresses, names (as written, each once
    whatever its case: a reverse name answers them as spelled), upstreams."""

    id: str
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    names: tuple[str, ...]
    upstreams: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkConfig:
    """One network's file: its name (without ``%int``), whether internal, gateways, upstreams, container lines."""

    name: str
    internal: bool
    gateways: tuple[str, ...]
    upstreams: tuple[str, ...]
    containers: tuple[ContainerEntry, ...]


def is_config_file(file_name: str) -> bool:
    """Whether a directory entry is a network's file: not the pid file, nor a hidden (temporary) file.

    Podman's network names start with a letter or digit, so a leading dot is never a network's.
    """
    return file_name != PID_FILE and not file_name.startswith(".")


def parse_network_file(file_name: str, text: str) -> tuple[NetworkConfig | None, list[ConfigProblem]]:
    """One network's file → its config (None if the first line is unusable) and the problems of skipped lines."""
    internal = file_name.endswith(INTERNAL_SUFFIX)
    name = file_name[:-len(INTERNAL_SUFFIX)] if internal else file_name
    *complete, unfinished = text.split("\n")  # netavark ends every line with one: a last line without is
    problems = [ConfigProblem(file_name, len(complete) + 1, "no newline at its end (still being written?)")
                ] if unfinished else []  # being written, and comes whole with netavark's next SIGHUP
    lines = [(number, line) for number, line in enumerate(complete, 1) if line]
    if not lines:
        return None, [*problems, ConfigProblem(file_name, 0, "no complete first line, no gateway address")]
    number, first = lines[0]
    fields = first.split(" ")
    try:
        gateways = _addresses(fields[0], "gateway address")
        upstreams = _addresses(fields[1], "network DNS server") if len(fields) > 1 and fields[1] else ()
        if len(fields) > 2:
            raise ValueError(f"{len(fields)} fields, expected at most 2")
        if not gateways:
            raise ValueError("no gateway address")
    except ValueError as err:
        return None, [ConfigProblem(file_name, number, f"bad first line ({err})"), *problems]
    containers = []
    for number, line in lines[1:]:
        try:
            containers.append(parse_container_line(line))
        except ValueError as err:
            problems.append(ConfigProblem(file_name, number, str(err)))
    return NetworkConfig(name, internal, gateways, upstreams, tuple(containers)), problems


def parse_container_line(line: str) -> ContainerEntry:
    """``ID IPV4S IPV6S NAMES[ UPSTREAMS]`` → a ContainerEntry; ValueError (one line, the reason) if malformed."""
    fields = line.split(" ")
    if not 4 <= len(fields) <= 5:
        raise ValueError(f"{len(fields)} fields, expected ID IPV4S IPV6S NAMES [DNS-SERVERS]")
    container_id, v4, v6, names = fields[:4]
    if not container_id:
        raise ValueError("empty container ID")
    ipv4 = _addresses(v4, "IPv4 address", version=4)
    ipv6 = _addresses(v6, "IPv6 address", version=6)
    if not ipv4 and not ipv6:
        raise ValueError(f"container {container_id[:12]} has no address")
    spelled: dict[str, str] = {}  # each name once, case-blind, as first written
    for name in names.split(","):
        if name:
            spelled.setdefault(name.lower(), name)
    name_list = tuple(spelled.values())
    if not name_list:
        raise ValueError(f"container {container_id[:12]} has no name")
    upstreams = _addresses(fields[4], "DNS server") if len(fields) == 5 and fields[4] else ()
    return ContainerEntry(container_id.lower(), ipv4, ipv6, name_list, upstreams)


def parse_config_dir(files: dict[str, str]) -> tuple[list[NetworkConfig], list[ConfigProblem]]:
    """Every network of a directory's files (file name → text; non-config entries ignored), by file name."""
    networks, problems = [], []
    for file_name in sorted(files):
        if not is_config_file(file_name):
            continue
        network, file_problems = parse_network_file(file_name, files[file_name])
        problems.extend(file_problems)
        if network is not None:
            networks.append(network)
    return networks, problems


def to_records(networks: list[NetworkConfig]) -> tuple[list[NetworkRecord],
                                                       list[tuple[ContainerRecord, list[EndpointRecord]]]]:
    """The networks and containers (each with its endpoints) that ``dnsd.core.builder`` makes a snapshot of.

    A container's first name is its name, the rest of the names on each
    network are that network's aliases. A container on several networks gets the
    upstreams of the first line that names any (aardvark-dns keys them by
    address, so it is one list in practice). Its endpoints come network by
    network in the files' order, a second address pair of each after every
    first one (a container on several networks asks their upstreams in that
    order). Network IDs are derived from names (sha256), stable across reloads.
    """
    records: list[NetworkRecord] = []
    containers: dict[str, tuple[ContainerEntry, list[tuple[NetworkRecord, ContainerEntry]]]] = {}
    for config in networks:
        network = _network(config)
        records.append(network)
        for entry in config.containers:
            first, places = containers.setdefault(entry.id, (entry, []))
            places.append((network, entry))
            if entry.upstreams and not first.upstreams:
                containers[entry.id] = (entry, places)
    attached = []
    for container_id, (first, places) in containers.items():
        container = ContainerRecord(id=container_id, name=places[0][1].names[0], dns=first.upstreams)
        endpoints = []
        for pair in range(max(max(len(entry.ipv4), len(entry.ipv6)) for _, entry in places)):
            for network, entry in places:
                if pair < max(len(entry.ipv4), len(entry.ipv6)):
                    aliases = tuple(name for name in entry.names if name.lower() != container.name.lower())
                    endpoints.append(EndpointRecord(network_id=network.id,
                                                    ipv4=entry.ipv4[pair] if pair < len(entry.ipv4) else None,
                                                    ipv6=entry.ipv6[pair] if pair < len(entry.ipv6) else None,
                                                    aliases=aliases))
        attached.append((container, endpoints))
    return records, attached


def _network(config: NetworkConfig) -> NetworkRecord:
    """The record of a network's file: dnsd listens on the first gateway of each family (IPv4's first)."""
    first: dict[int, str] = {}
    for gateway in config.gateways:
        first.setdefault(ipaddress.ip_address(gateway).version, gateway)
    return NetworkRecord(id=_digest(config.name), name=config.name,
                         dns_addresses=tuple(first[version] for version in (4, 6) if version in first),
                         internal=config.internal, dns=config.upstreams)


def _addresses(text: str, what: str, version: int | None = None) -> tuple[str, ...]:
    """A comma-separated list of IP addresses, normalized; ValueError naming ``what`` and the bad one."""
    if not text:
        return ()
    addresses = []
    for item in text.split(","):
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(f"bad {what} {item!r}") from None
        if version is not None and address.version != version:
            raise ValueError(f"bad {what} {item!r}: not IPv{version}")
        addresses.append(str(address))
    return tuple(addresses)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
