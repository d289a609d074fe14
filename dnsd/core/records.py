"""The records dnsd serves, as a record source gives them: networks, containers, endpoints as dnsd sees them.

The one statement of what the snapshot builder and its rules (``dnsd.core.builder``, ``dnsd.core.dialect``)
read of a record, and nothing more: ``ServedNetwork``, ``ServedContainer``, ``ServedEndpoint``. netcore's
store rows (``netcore.model.Network``, ``Container``, ``Endpoint``) meet them as they are; a source with no
rows of its own (Podman's config directory, the CNI plugin's registrations) makes ``NetworkRecord``,
``ContainerRecord`` and ``EndpointRecord``, which hold these fields alone, so it states what it knows and
leaves the rest unknown (``None``, or empty where the protocol says what that means) instead of making up a
bridge, a MAC address or a subnet. ``RecordSource`` is what a source is to dnsd's reloads.

Pure: no I/O, nothing of dnsd's other layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


class ServedNetwork(Protocol):
    """A network as dnsd serves it. Read-only: a frozen dataclass's fields or properties meet it."""

    @property
    def id(self) -> str:
        """Its key, stable across reloads: endpoints name their network by it."""

    @property
    def name(self) -> str:
        """Its name: ``NAME.NETWORK`` in Docker's dialect, Docker's reverse names, the metrics' and query log's
        label."""

    @property
    def dns_enabled(self) -> bool:
        """Whether dnsd serves names on it at all (netcore: every network but Docker's default bridge)."""

    @property
    def dns_addresses(self) -> tuple[str, ...]:
        """The addresses dnsd listens on for it (its gateways, or a macvlan network's shim address)."""

    @property
    def subnet(self) -> str | None:
        """Its IPv4 subnet, CIDR; None or "" when the source does not know it. A source that is no container
        is answered on the network's listeners when it lies in the subnet, and the reverse names of the
        subnet's addresses are answered here, never forwarded; without a subnet, in the narrowest range
        around the listener address, at least a /24, that holds the network's containers
        (``dnsd.core.builder.served_range``)."""

    @property
    def subnet6(self) -> str | None:
        """Its IPv6 subnet, as ``subnet`` (at least a /64 without one)."""

    @property
    def internal(self) -> bool:
        """No way out: its sources get no forwarding."""

    @property
    def icc(self) -> bool:
        """Whether its containers reach each other (Docker's ``enable_icc``): in a view over several networks,
        one without it contributes a name only when no other network has the name (moby/moby#46162)."""

    @property
    def dns(self) -> tuple[str, ...]:
        """Its upstream servers, ``IP`` or ``IP:PORT``, in order; empty: dnsd's own (``--upstream``)."""


class ServedContainer(Protocol):
    """A container as dnsd serves it."""

    @property
    def id(self) -> str:
        """Its key, stable across reloads: a source's change feed names containers by it."""

    @property
    def name(self) -> str:
        """Its name: the first name of its names (``dnsd.core.dialect``), Docker's reverse names."""

    @property
    def short_id(self) -> str:
        """The 12 hex digits Docker answers a container to (``netcore.model.dns_names``)."""

    @property
    def hostname(self) -> str:
        """Its hostname, which Docker answers it to; "" when it has none or the source does not know it."""

    @property
    def netns(self) -> str:
        """The named network namespace (/run/netns/NAME) its loopback ``--dns`` servers are asked from (a
        resolver inside the container); "" when there is none to ask from: they are asked from dnsd's own."""

    @property
    def dns(self) -> tuple[str, ...]:
        """Its own upstream servers (``--dns``), ``IP`` or ``IP:PORT``, in order; empty: its networks'."""


class ServedEndpoint(Protocol):
    """A container's place on a network: one address of each family at most, as netcore's endpoints hold them
    (a source with more addresses on one network gives one endpoint per pair)."""

    @property
    def network_id(self) -> str:
        """The ``ServedNetwork.id`` of its network."""

    @property
    def ifname(self) -> str | None:
        """Its interface inside the container (``eth0``): a container's networks come in its interfaces' order
        (``eth2`` before ``eth10``), which orders its upstream lists; None when the source does not know it,
        and then they come in the order the source gives them."""

    @property
    def ipv4(self) -> str | None:
        """Its IPv4 address, if any."""

    @property
    def ipv6(self) -> str | None:
        """Its IPv6 address, if any."""

    @property
    def aliases(self) -> tuple[str, ...]:
        """Its names on this network besides the container's own (``--net-alias``, Podman's aliases)."""


Attached = tuple[ServedContainer, Sequence[ServedEndpoint]]  # a container and its endpoints, in no particular order


class RecordSource(Protocol):
    """Where the records come from: netcore's ``Store`` (opened read-only) is one as it is; the others are in
    ``dnsd.sources``. Every call is made in the one reload thread (``dnsd.reload``)."""

    def generation(self) -> int:
        """A counter that every change of the records bumps."""

    def dns_records(self) -> AbstractContextManager[tuple[Sequence[ServedNetwork], Iterator[Attached]]]:
        """In one read: every running network, and every running container with its running endpoints."""

    def changes_since(self, generation: int) -> tuple[int, set[str] | None]:
        """The current generation, and the IDs of the containers changed since ``generation`` (None: reload all)."""

    def container_records(self, ids: set[str]) -> list[Attached]:
        """The running ones of these containers, each with its running endpoints."""


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    """A ``ServedNetwork`` of a source with no rows of its own: what the source knows of a network, no more.
    A network every source serves and whose containers reach each other unless it says otherwise."""

    id: str
    name: str
    dns_addresses: tuple[str, ...]
    subnet: str | None = None
    subnet6: str | None = None
    internal: bool = False
    dns: tuple[str, ...] = ()
    icc: bool = True
    dns_enabled: bool = True


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A ``ServedContainer`` of a source with no rows of its own."""

    id: str
    name: str
    dns: tuple[str, ...] = ()
    hostname: str = ""
    netns: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True, slots=True)
class EndpointRecord:
    """A ``ServedEndpoint`` of a source with no rows of its own."""

    network_id: str
    ipv4: str | None = None
    ipv6: str | None = None
    aliases: tuple[str, ...] = ()
    ifname: str | None = None
