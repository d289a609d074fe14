"""dnsd over the CNI plugin's registrations: a ``dnsd.core.records.RecordSource`` (issue 29).

``dnsd --cni --state-dir DIR`` serves what ``netcore-dns`` (``dnsd.cni.plugin``)
registered in ``DIR`` (``dnsd.sources.cni_store``): one dnsd for every CNI network of
the host, on each network's gateway addresses. ``to_records`` (pure) turns the
attachments into the records dnsd serves (``dnsd.core.records``), as
``dnsd.sources.aardvark_config`` does for Podman's netavark files, holding what
the registrations say and nothing made up:

* a ``NetworkRecord`` per CNI network name, listened on at its gateway and
  served over its subnet, per family, those the chain's IPAM reported for it
  (its first attachment's), no upstreams of its own (dnsd's ``--upstream``,
  else the host's resolv.conf);
* a ``ContainerRecord`` per ``CNI_CONTAINERID`` (its name and hostname from the
  last ADD that gave any), with an ``EndpointRecord`` per attachment and
  address pair, whose ``ifname`` is ``CNI_IFNAME`` (so the builder orders a
  container's networks as its interfaces) and whose aliases are the
  ``aliases`` capability's, each name also spelled ``NAME.DOMAIN`` when the
  network's plugin configuration names a ``domainName`` (dnsname's key).

So CNI containers get netcore's answers: names, aliases (several holders
rotate), the 12-character ID, the hostname, ``NAME.NETWORK``, PTR, each client
answered the names of the networks it is on, the rest forwarded through the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
from collections.abc import Iterable, Iterator

from dnsd.core.records import Attached, ContainerRecord, EndpointRecord, NetworkRecord
from dnsd.sources.cni_store import Attachment, Registrations


def network_id(name: str) -> str:
    """A CNI network's record ID: stable across reloads and dnsd restarts (sha256 of the name)."""
    return hashlib.sha256(f"cni-network/{name}".encode()).hexdigest()


def network_of(name: str, attachment: Attachment) -> NetworkRecord:
    """The record of a CNI network, with the gateways and subnets ``attachment`` was given (one per family)."""
    def first(values: Iterable[str], version: int) -> str | None:
        return next((value for value in values if (":" in value) == (version == 6)), None)

    def subnet(version: int) -> str | None:
        address = first(attachment.subnets, version)  # the container's address with its prefix length
        return str(ipaddress.ip_interface(address).network) if address else None

    gateways = (first(attachment.gateways, 4), first(attachment.gateways, 6))
    return NetworkRecord(id=network_id(name), name=name, dns_addresses=tuple(g for g in gateways if g),
                         subnet=subnet(4), subnet6=subnet(6))


def _spellings(names: Iterable[str], domain: str) -> list[str]:
    suffix = domain.strip(".").lower()
    names = [name for name in names if name]
    return [*names, *(f"{name}.{suffix}" for name in names)] if suffix else names


def container_records(attachments: Iterable[Attachment]) -> list[Attached]:
    """Each container among the attachments with its endpoints (every attachment's, one per address pair)."""
    by_container: dict[str, list[Attachment]] = {}
    for attachment in attachments:
        by_container.setdefault(attachment.container_id, []).append(attachment)
    attached: list[Attached] = []
    for container_id, own in by_container.items():
        name = next((a.name for a in reversed(own) if a.name), "")
        hostname = next((a.hostname for a in reversed(own) if a.hostname), "")
        container = ContainerRecord(id=container_id, name=name, hostname=hostname)
        endpoints = []
        for attachment in own:
            extra = _spellings([name, *attachment.aliases, hostname], attachment.domain)
            aliases = tuple(dict.fromkeys(alias.lower() for alias in (*attachment.aliases, *extra)
                                          if alias.lower() not in (name.lower(), hostname.lower())))
            pairs = max(len(attachment.ipv4), len(attachment.ipv6))
            for pair in range(pairs):
                endpoints.append(EndpointRecord(
                    network_id=network_id(attachment.network), ifname=attachment.ifname,
                    ipv4=attachment.ipv4[pair] if pair < len(attachment.ipv4) else None,
                    ipv6=attachment.ipv6[pair] if pair < len(attachment.ipv6) else None,
                    aliases=aliases))
        attached.append((container, endpoints))
    return attached


def to_records(attachments: list[Attachment]) -> tuple[list[NetworkRecord], list[Attached]]:
    """The networks and containers (each with its endpoints) that ``dnsd.core.builder`` makes a snapshot of."""
    networks: dict[str, NetworkRecord] = {}
    for attachment in attachments:
        if attachment.network not in networks and attachment.gateways:
            networks[attachment.network] = network_of(attachment.network, attachment)
    return sorted(networks.values(), key=lambda network: network.name), container_records(attachments)


class CniRecords:
    """A ``dnsd.core.records.RecordSource`` over the registrations of a CNI state dir (read only).

    Raises ``dnsd.sources.cni_store.StoreError`` when the file cannot be read (the server logs it and retries).
    """

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self._store = Registrations.open_readonly(state_dir)

    def generation(self) -> int:
        """The registrations' generation: every ADD, DEL and sweep bumps it."""
        return self._store.generation()

    @contextlib.contextmanager
    def dns_records(self) -> Iterator[tuple[list[NetworkRecord], Iterator[Attached]]]:
        """In one read: every CNI network with a registration, and every registered container with its endpoints."""
        with self._store.read():
            networks, attached = to_records(self._store.attachments())
        yield networks, iter(attached)

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """The generation now, and the container IDs changed since ``generation`` (None: build anew)."""
        return self._store.changes_since(generation)

    def container_records(self, ids: set[str]) -> list[Attached]:
        """The registered ones of these containers, each with its endpoints."""
        return container_records(self._store.attachments(ids))

    def close(self) -> None:
        self._store.close()
