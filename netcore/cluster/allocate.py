"""Cluster-wide allocation: pure decisions, and the etcd transactions that make them stick.

Every allocation is a create-if-absent transaction (flannel's pattern, pkg/subnet/etcd): the decision is made
on a listing, the transaction writes it only if the key is still free (and, where the decision read a whole
prefix, only if nothing under it changed since the listing's revision); a lost race lists again. So two hosts
never hand out one address, VXLAN ID, subnet or name, however many allocate at once.

- Overlay networks (``create_network``): a name unique across local and global scope, a VXLAN ID >= 4096
  (Docker's overlay range, up to 2^24 - 1), a subnet (given, or the lowest free /24 of Docker's default
  overlay pool 10.0.0.0/8) overlapping no other overlay network and no local network of any joined host,
  all in one transaction with the network's record, so nothing is half-created.
- Addresses (``allocate_address``): the lowest free address of the network's subnet (gateway excluded,
  as ``netcore.ipam`` does for a bridge), or the one asked for, claimed under the host's lease: a dead
  host's addresses are not handed out again until its lease is gone.
- Hosts (``publish_host``): a host name is held by one host ID; its local subnets may not overlap an overlay.

Idempotence: every claim's value names its holder, and a transaction that finds its key holding exactly the
value it meant to write counts as done (the first try was applied but its reply lost, e.g. the leader died).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from netcore import ipam
from netcore.cluster import keys
from netcore.cluster.keys import Claim, EndpointRecord, HostRecord, NetworkRecord, RecordError
from netcore.cluster.store import (
    ClusterStore,
    Delete,
    Get,
    KeyValue,
    LeaseKeeper,
    Put,
    StoreUnavailable,
    absent,
    exists,
    mod_is,
    none_under,
    unchanged_since,
    value_is,
)
from netcore.errors import Conflict, NetcoreError, NotFound

OVERLAY_POOLS: tuple[tuple[str, int], ...] = (("10.0.0.0/8", 24),)  # Docker's default overlay pool
VNI_FIRST = 4096  # Docker's overlay VXLAN IDs start here (swarm's vxlan-id start)
VNI_LAST = (1 << 24) - 1
MAX_ATTEMPTS = 50  # transactions lost to other hosts' allocations before giving up


# -- pure decisions --------------------------------------------------------------------------------------------


def lowest_free_vni(taken: Iterable[int]) -> int:
    """The lowest VXLAN ID from 4096 not in ``taken``; NetcoreError if all 2^24 - 4096 are taken."""
    used = set(taken)
    vni = VNI_FIRST
    while vni in used:
        vni += 1
    if vni > VNI_LAST:
        raise NetcoreError("no free VXLAN ID left (4096-16777215)")
    return vni


def subnet_owners(overlays: dict[str, str], hosts: Iterable[HostRecord]) -> dict[str, ipam.IPNetwork]:
    """Every subnet in use cluster-wide, described for an error: ``{"overlay network NAME": net,
    "a local network of host H": net, ...}``. ``overlays`` maps a subnet CIDR to its network's name (or ID).
    Every subnet is kept, even where two descriptions would read the same (the CIDR is then added)."""
    owners: dict[str, ipam.IPNetwork] = {}

    def add(description: str, cidr: str) -> None:
        if description in owners:
            description = f"{description} [{cidr}]"
        owners[description] = ipaddress.ip_network(cidr)

    for cidr, network in sorted(overlays.items()):
        add(f"overlay network {network}", cidr)
    for host in hosts:
        for cidr in host.local_subnets:
            add(f"a local network of host {host.name}", cidr)
    return owners


def plan_overlay_subnet(requested: str | None, gateway: str | None, owners: dict[str, ipam.IPNetwork]
                        ) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]:
    """The subnet and gateway of a new overlay network: ``requested`` checked (IPv4, no overlap with any of
    ``owners``: Conflict naming the owner), or the lowest free /24 of 10.0.0.0/8; the gateway as given
    (inside the subnet) or its first host address. NetcoreError for bad input or an exhausted pool."""
    if requested is None:
        subnet = ipam.choose_subnet(owners.values(), pools=OVERLAY_POOLS)
    else:
        subnet = ipam.parse_subnet(requested)
        if subnet.version != 4:
            raise NetcoreError(f"invalid subnet {requested!r}: overlay networks are IPv4")
        ipam.check_no_overlap(subnet, owners)
    return subnet, ipam.plan_gateway(subnet, gateway)


def lowest_free_address(network: NetworkRecord, taken: Iterable[str], requested: str | None = None) -> str:
    """The address for a new endpoint: ``requested`` if free, else the lowest free one of the subnet, never
    the network, broadcast or gateway address (``netcore.ipam.allocate_address``). NetcoreError/Conflict."""
    subnet = ipaddress.ip_network(network.subnet)
    return str(ipam.allocate_address(subnet, ipaddress.ip_address(network.gateway), taken, requested=requested))


# -- reading the store -------------------------------------------------------------------------------------------


def _decoded(kv: KeyValue, cls: type):
    """The record of ``kv``, or None if it cannot be read (a warning is logged by the view's reader; here the
    allocation simply does not count a key it cannot read as free: see ``_claims``)."""
    try:
        return keys.decode(kv.value, cls, kv.key).record
    except RecordError:
        return None


def _hosts(items: Iterable[KeyValue]) -> list[HostRecord]:
    return [record for kv in items if (record := _decoded(kv, HostRecord)) is not None]


def _holder(kv: KeyValue | None) -> Claim | None:
    return None if kv is None else _decoded(kv, Claim)


def store_of(keeper: LeaseKeeper) -> ClusterStore:
    return keeper.store


async def _overlay_names(store: ClusterStore, subnet_claims: Iterable[KeyValue]) -> dict[str, str]:
    """subnet CIDR -> the name of the overlay network holding it (its ID's first 12 digits if unreadable)."""
    names = {}
    for kv in (await store.list(keys.NETWORKS)).items:
        record = _decoded(kv, NetworkRecord)
        if record is not None:
            names[record.id] = record.name
    overlays = {}
    for kv in subnet_claims:
        claim = _holder(kv)
        owner = claim.owner if claim is not None else "?"
        overlays[keys.parse_key(kv.key).parts[0]] = names.get(owner, owner[:12])
    return overlays


# -- networks ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OverlaySpec:
    """What `network create -d overlay` asks for: ``network_id`` (64 hex, made by the caller), ``name``,
    ``subnet``/``gateway`` (None: chosen), ``host`` (the creating host's name), ``created`` (ISO time),
    ``avoid``: (description, CIDR) pairs the creating host knows to be taken there (its networks and routes,
    which its host record may not show yet), kept out like every host's published local subnets."""

    network_id: str
    name: str
    host: str
    subnet: str | None = None
    gateway: str | None = None
    internal: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    avoid: tuple[tuple[str, str], ...] = ()


def _name_conflict(name: str, claims: Iterable[KeyValue]) -> Conflict:
    for kv in claims:
        ref = keys.parse_key(kv.key)
        if ref.kind == keys.KIND_LOCAL_NAME:
            return Conflict(f"network name {name!r} is in use by a local network on host {ref.parts[1]}")
    return Conflict(f"network name {name!r} is in use by an overlay network")


async def create_network(store: ClusterStore, spec: OverlaySpec) -> NetworkRecord:
    """Create an overlay network cluster-wide in one transaction: its record, its name, VXLAN ID and subnet.

    Conflict: the name is taken (by an overlay network, or a local network of some host), or the given
    subnet overlaps one in use (naming it). NetcoreError: bad subnet/gateway, pools exhausted.
    StoreUnavailable: the store did not answer. A retry of a create that was applied returns its record."""
    for _ in range(MAX_ATTEMPTS):
        hosts = await store.list(keys.HOSTS)
        subnets = await store.list(keys.SUBNETS)
        vnis = await store.list(keys.VNIS)
        overlays = await _overlay_names(store, subnets.items)
        owners = subnet_owners(overlays, _hosts(hosts.items))
        for description, cidr in spec.avoid:
            owners.setdefault(f"{description} on host {spec.host}", ipaddress.ip_network(cidr))
        subnet, gateway = plan_overlay_subnet(spec.subnet, spec.gateway, owners)
        vni = lowest_free_vni(int(keys.parse_key(kv.key).parts[0]) for kv in vnis.items)
        record = NetworkRecord(id=spec.network_id, name=spec.name, subnet=str(subnet), gateway=str(gateway),
                               vni=vni, internal=spec.internal, options=dict(spec.options),
                               labels=dict(spec.labels), created=spec.created, created_by=spec.host)
        claim = keys.encode(Claim(owner=spec.network_id, host=spec.host))
        name_key = keys.global_name_key(spec.name)
        result = await store.txn(
            [none_under(keys.name_prefix(spec.name)), absent(keys.vni_key(vni)),
             absent(keys.subnet_key(str(subnet))), unchanged_since(keys.SUBNETS, subnets.revision),
             unchanged_since(keys.HOSTS, hosts.revision), absent(keys.network_key(spec.network_id))],
            [Put(keys.network_key(spec.network_id), keys.encode(record)), Put(name_key, claim),
             Put(keys.vni_key(vni), claim), Put(keys.subnet_key(str(subnet)), claim)],
            [Get(keys.name_prefix(spec.name), prefix=True), Get(keys.network_key(spec.network_id))])
        if result.succeeded:
            return record
        names, existing = result.reads
        if existing:  # this very network: a retried create whose first try was applied
            mine = _decoded(existing[0], NetworkRecord)
            if mine is not None and mine.name == spec.name:
                return mine
            raise Conflict(f"network ID {spec.network_id} exists already in the cluster")
        if names:
            raise _name_conflict(spec.name, names)
        # a VXLAN ID or subnet was taken, or a host changed its subnets, since the listing: decide again
    raise StoreUnavailable(f"cluster store {store.description}: network create kept losing races; try again")


async def remove_network(store: ClusterStore, network_id: str) -> NetworkRecord:
    """Remove an overlay network everywhere (record, name, VXLAN ID, subnet, address claims) in one transaction.

    NotFound if there is none; Conflict, naming the containers and their hosts, while any host has an
    endpoint on it (or an address claimed, a container starting). Returns the removed record."""
    for _ in range(MAX_ATTEMPTS):
        current = await store.get(keys.network_key(network_id))
        record = None if current is None else _decoded(current, NetworkRecord)
        if current is None:
            raise NotFound(f"overlay network {network_id[:12]} not found")
        deletes = [Delete(keys.network_key(network_id)), Delete(keys.addresses_prefix(network_id), prefix=True)]
        if record is not None:
            deletes += [Delete(keys.global_name_key(record.name)), Delete(keys.vni_key(record.vni)),
                        Delete(keys.subnet_key(record.subnet))]
        result = await store.txn(
            [mod_is(keys.network_key(network_id), current.mod_revision),
             none_under(keys.endpoints_prefix(network_id)), none_under(keys.addresses_prefix(network_id))],
            deletes,
            [Get(keys.endpoints_prefix(network_id), prefix=True), Get(keys.addresses_prefix(network_id), prefix=True)])
        if result.succeeded:
            return record if record is not None else NetworkRecord(network_id, "", "", "", 0)
        endpoints, addresses = result.reads
        name = record.name if record is not None else network_id[:12]
        if endpoints:
            users = []
            for kv in endpoints:
                endpoint = _decoded(kv, EndpointRecord)
                users.append(f"{endpoint.container_name} (host {endpoint.host})" if endpoint else kv.key)
            raise Conflict(f"network {name} is in use by {', '.join(sorted(users))}")
        if addresses:
            hosts = sorted({claim.host for kv in addresses if (claim := _holder(kv)) is not None})
            raise Conflict(f"network {name} has containers starting on host {', '.join(hosts) or '?'}; try again")
        # the record changed under us: read it again
    raise StoreUnavailable(f"cluster store {store.description}: network rm kept losing races; try again")


# -- addresses and endpoints ---------------------------------------------------------------------------------------


async def allocate_address(keeper: LeaseKeeper, network: NetworkRecord, endpoint_id: str, host: str,
                           requested: str | None = None) -> str:
    """Claim an address of ``network`` for endpoint ``endpoint_id`` of ``host``, under the host's lease.

    The lowest free one (gateway, network and broadcast excluded) or ``requested`` (``--ip``). Conflict if
    ``requested`` is held by another endpoint (naming its host); NotFound if the network is gone; NetcoreError
    if the subnet is full. Calling it again for the same endpoint returns the address it holds."""
    prefix = keys.addresses_prefix(network.id)
    mine = keys.encode(Claim(owner=endpoint_id, host=host))
    listing = await keeper.store.list(prefix)
    items: tuple[KeyValue, ...] = listing.items
    for _ in range(MAX_ATTEMPTS * 4):
        held = [keys.parse_key(kv.key).parts[1] for kv in items if kv.value == mine]
        if held and requested is None:
            address = held[0]  # asked again for the same endpoint: the address it holds
        else:
            others = {keys.parse_key(kv.key).parts[1]: kv for kv in items if kv.value != mine}
            if requested is not None and str(ipam.parse_address(requested)) in others:
                raise _address_taken(str(ipam.parse_address(requested)), others[str(ipam.parse_address(requested))],
                                     network)
            address = lowest_free_address(network, others, requested)
        key = keys.address_key(network.id, address)
        result = await keeper.txn(
            [absent(key), exists(keys.network_key(network.id))], lambda lease, key=key: [Put(key, mine, lease)],
            [Get(key), Get(keys.network_key(network.id)), Get(prefix, prefix=True)])
        if result.succeeded:
            return address
        holder_kvs, network_kvs, fresh = result.reads
        if not network_kvs:
            raise NotFound(f"overlay network {network.name} is gone")
        if holder_kvs and holder_kvs[0].value == mine:
            ok, _, _ = await keeper.claim(key, mine)  # ours already: make sure it is under the current lease
            if ok:
                return address
        if requested is not None:
            raise _address_taken(address, holder_kvs[0] if holder_kvs else None, network)
        items = fresh
    raise StoreUnavailable(f"cluster store {keeper.store.description}: address allocation kept losing races")


def _address_taken(address: str, holder: KeyValue | None, network: NetworkRecord) -> Conflict:
    claim = _holder(holder)
    where = f" by a container on host {claim.host}" if claim and claim.host else ""
    return Conflict(f"address {address} is already in use{where} on network {network.name}")


async def release_address(keeper: LeaseKeeper, network_id: str, address: str, endpoint_id: str, host: str) -> bool:
    """Give back an address, if this endpoint still holds it (never someone else's). Returns whether it did."""
    key = keys.address_key(network_id, address)
    mine = keys.encode(Claim(owner=endpoint_id, host=host))
    result = await keeper.txn([value_is(key, mine)], lambda lease: [Delete(key)])
    return result.succeeded


async def publish_endpoint(keeper: LeaseKeeper, endpoint: EndpointRecord) -> None:
    """Make a built endpoint known to every host (its key, under the lease): only while this endpoint still
    holds its address (so a network removed, or an address lost with a lease, is never published).
    Conflict otherwise. Publishing the same record again is harmless."""
    claim = keys.encode(Claim(owner=endpoint.id, host=endpoint.host))
    address = keys.address_key(endpoint.network_id, endpoint.ipv4)
    key = keys.endpoint_key(endpoint.network_id, endpoint.id)
    result = await keeper.txn([value_is(address, claim)], lambda lease: [Put(key, keys.encode(endpoint), lease)])
    if not result.succeeded:
        raise Conflict(f"address {endpoint.ipv4} of container {endpoint.container_name} is no longer held by "
                       f"host {endpoint.host}")


async def withdraw_endpoint(keeper: LeaseKeeper, endpoint: EndpointRecord) -> None:
    """Remove an endpoint's key and give back its address (if still its own), in one transaction."""
    claim = keys.encode(Claim(owner=endpoint.id, host=endpoint.host))
    address = keys.address_key(endpoint.network_id, endpoint.ipv4)
    key = keys.endpoint_key(endpoint.network_id, endpoint.id)
    result = await keeper.txn([value_is(address, claim)], lambda lease: [Delete(key), Delete(address)],
                              [Delete(key)])
    if not result.succeeded:
        keeper.held.pop(key, None)


# -- hosts and local names -----------------------------------------------------------------------------------------


async def publish_host(keeper: LeaseKeeper, record: HostRecord) -> None:
    """Register (or update) this host's record under its lease: at join, at restart, and whenever its local
    subnets change. Conflict if another host (another host ID) holds the name, or if one of
    ``record.local_subnets`` overlaps an overlay network's subnet (naming it)."""
    key = keys.host_key(record.name)
    value = keys.encode(record)
    for _ in range(MAX_ATTEMPTS):
        current = await keeper.store.get(key)
        subnets = await keeper.store.list(keys.SUBNETS)
        if current is not None:
            other = _decoded(current, HostRecord)
            if other is None or other.host_id != record.host_id:
                where = f" at {other.address}" if other is not None else ""
                raise Conflict(f"host name {record.name} is taken by another host{where} in the cluster")
        owners = subnet_owners(await _overlay_names(store_of(keeper), subnets.items), ())
        for cidr in record.local_subnets:
            ipam.check_no_overlap(ipaddress.ip_network(cidr), owners)
        same = absent(key) if current is None else mod_is(key, current.mod_revision)
        result = await keeper.txn([same, unchanged_since(keys.SUBNETS, subnets.revision)],
                                  lambda lease: [Put(key, value, lease)])
        if result.succeeded:
            return
    raise StoreUnavailable(f"cluster store {keeper.store.description}: host registration kept losing races")


async def claim_local_name(keeper: LeaseKeeper, name: str, host: str) -> None:
    """Hold ``name`` for a local network of ``host`` (hosts may share a local name; no overlay may take it).
    Conflict if an overlay network has that name."""
    key = keys.local_name_key(name, host)
    result = await keeper.txn([absent(keys.global_name_key(name))],
                              lambda lease: [Put(key, keys.encode(Claim(owner=host, host=host)), lease)])
    if not result.succeeded:
        raise Conflict(f"network name {name!r} is in use by an overlay network")


async def release_local_name(keeper: LeaseKeeper, name: str, host: str) -> None:
    await keeper.delete(keys.local_name_key(name, host))
