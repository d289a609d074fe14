"""Makes Snapshots, and patches the last one when a few containers change.

A full build turns every record into names. A patch takes just the containers
the store's change feed names, withdraws what each one contributed before (its
names, reverse names and client addresses), adds what it contributes now, and
derives the next Snapshot from the previous one, copying only the dicts that
change: the names of each view that holds a changed name, the client map,
the scope table. Its Python-level work follows the size of the change; only
those C-level copies grow with the number of containers (about 0.4 ms for the
50,000 names of 10,000 containers).

What the builder keeps from one snapshot to the next:

* per served network, its own names, the very dict its listeners answer from.
  A name that one endpoint contributes to maps straight to that contribution,
  so those names are their own index; the few names that several endpoints
  contribute to (an alias shared by containers, a container name that is also
  a reverse name) are listed with all their contributions in ``crowded``;
* a *view* per set of networks some container sees: the union of their names,
  a dict that every scope over those networks shares;
* the scopes, by (networks in interface order, --dns), each in a stable slot of
  the snapshot's scope table, so a view's names change without re-pointing
  the addresses of its containers;
* what each container contributed, so it can be withdrawn;
* the entries of names with several contributions, shared by content and
  counted, so a record set keeps its rotation slot while it lives and the
  slot is freed with the last use.

Not thread-safe: one reload thread owns a builder. The snapshots it returns
never change and may be read from any thread.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from dnsd.core.dialect import DOCKER, NAME_DOT_NETWORK, Dialect
from dnsd.core.records import Attached, ServedContainer, ServedEndpoint, ServedNetwork
from dnsd.core.snapshot import (
    Entry,
    Names,
    PreferringScope,
    RecordSet,
    Scope,
    Snapshot,
    Subnet,
    Upstream,
    entry_of,
    is_loopback,
    normalize_address,
    parse_upstream,
    records_in,
)
from dnsd.core.wire import A_IN, AAAA_IN, PTR_IN, encode_name, reverse_name
from netcore.model import Container, Endpoint, Network, group_by_container

# Patching a container costs about what building it does (plus copies of the changed dicts), and reading its rows
# about what reading them for a full build does; past a quarter of all containers a full build is as cheap, and
# leaves compact dicts behind.
PATCH_LIMIT_FLOOR = 100  # changed containers a patch always takes
PATCH_LIMIT_SHARE = 4  # past that, patch while at most 1/PATCH_LIMIT_SHARE of the containers changed
MIN_SERVED_PREFIX = {4: 24, 6: 64}  # a network with no known subnet is served at least this wide (``served_range``)

# (served network ids in interface order, the container's --dns, its namespace if one of those is a loopback server)
ScopeKey = tuple[tuple[str, ...], tuple[str, ...], str]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def build_snapshot(networks: Iterable[Network], containers: Iterable[Container], endpoints: Iterable[Endpoint],
                   ttl: int = 0, dialect: Dialect = DOCKER) -> Snapshot:
    """A snapshot of netcore's records made from scratch (a server keeps a ``SnapshotBuilder`` to patch instead).

    ``ttl``: seconds, as dnsd's ``--ttl``. Endpoints of containers not among ``containers`` are left out.
    """
    return SnapshotBuilder(ttl, dialect).build(networks, group_by_container(containers, endpoints))


class SnapshotBuilder:
    """Builds snapshots from records, and patches the last one it made from the records of changed containers.

    ``dialect`` (``dnsd.core.dialect``) says whose rules the names follow: Docker's (netcore's networks) or
    aardvark-dns's (Podman's); ``ttl`` is in seconds.
    """

    def __init__(self, ttl: int = 0, dialect: Dialect = DOCKER):
        self._ttl = ttl.to_bytes(4, "big")
        self._dialect = dialect
        self._shared: dict[tuple[bytes, ...], _SharedEntry] = {}  # records -> the entry of names holding them all
        self._retired: dict[tuple[bytes, ...], _SharedEntry] = {}  # during a full build: the previous ones
        self._rotation_slot_count = 0
        self._free_rotation_slots: list[int] = []
        self._finished = False  # the last build or patch ran to its end, so the state matches its snapshot
        self._start_over(())

    def can_patch(self, changed_count: int) -> bool:
        """Whether ``patch`` may take that many changed containers, and is the cheaper way to take them."""
        limit = max(PATCH_LIMIT_FLOOR, len(self._containers) // PATCH_LIMIT_SHARE)
        return self._finished and changed_count <= limit

    def build(self, networks: Iterable[ServedNetwork], containers: Iterable[Attached]) -> Snapshot:
        """A snapshot of these records (running ones, as ``Store.dns_records`` gives), made from scratch.

        Each container is taken in turn and its rows let go of: read lazily,
        the rows of all containers never need to be in memory at once.
        """
        self._finished = False
        self._start_over(networks)
        if self._unbounded:  # networks whose source names no subnet: served by their containers' addresses
            containers = self._noting_members(containers)
        self._retired.update(self._shared)  # reused if still there, so their rotation turns carry over
        self._shared = {}
        change = _Change(writable_views=(network.view for network in self._networks.values()))
        snapshot = self._apply(change, set(), containers)
        for shared in self._retired.values():
            self._free_rotation_slots_of(shared.entry)
        self._retired = {}
        return snapshot

    def patch(self, changed_ids: Iterable[str], containers: Iterable[Attached]) -> Snapshot:
        """The last snapshot with these containers as the records say now; the records hold only running ones.

        ``containers`` are the running rows of the changed containers
        (``Store.container_records``): a changed container that is not among
        them is gone. Call only when ``can_patch`` says so.
        """
        changed = set(changed_ids)
        if not self.can_patch(len(changed)):
            raise RuntimeError("patch without a finished snapshot to patch, or too large a change")
        self._finished = False
        return self._apply(_Change(), changed, (pair for pair in containers if pair[0].id in changed))

    # -- one build or patch --------------------------------------------------

    def _start_over(self, networks: Iterable[ServedNetwork]) -> None:
        served = [network for network in networks if network.dns_enabled]
        self._networks = {network.id: _NetworkNames(network) for network in served}
        self._views = {frozenset([network_id]): names.view for network_id, names in self._networks.items()}
        self._scopes: dict[ScopeKey, _ScopeUse] = {}
        self._scope_table: list[Scope | None] = []
        self._free_scope_slots: list[int] = []
        self._containers: dict[str, _ContainerNames] = {}
        self._clients: dict[str, int] = {}
        self._listeners: dict[str, Scope] = {}
        subnets = {network.id: tuple(ipaddress.ip_network(subnet, strict=False)
                                     for subnet in (network.subnet, network.subnet6) if subnet) for network in served}
        self._served_subnets = tuple(subnet for network in served for subnet in subnets[network.id])
        # each listener address -> its network's subnets: where a source that is no container lies to be answered
        # there (issue 24 item 1)
        self._listener_subnets = {gateway: subnets[names.network.id] for names in self._networks.values()
                                  for gateway in names.gateways}
        self._network_upstreams = {network.id: _upstreams(network.dns) for network in served}
        self._host_entries = self._gateway_entries(self._networks.values())
        # network id -> its listener addresses of a family it names no subnet of, and its containers' addresses
        self._unbounded: dict[str, tuple[list[Address], list[Address]]] = {}
        for network in served:
            versions = {subnet.version for subnet in subnets[network.id]}
            listeners = [address for address in map(ipaddress.ip_address, self._networks[network.id].gateways)
                         if address.version not in versions]
            if listeners:
                self._unbounded[network.id] = (listeners, [])

    def _noting_members(self, containers: Iterable[Attached]) -> Iterable[Attached]:
        """``containers``, passed on one by one, the addresses of their endpoints on unbounded networks noted."""
        for pair in containers:
            for endpoint in pair[1]:
                unbounded = self._unbounded.get(endpoint.network_id)
                if unbounded is not None:
                    unbounded[1].extend(ipaddress.ip_address(address) for address in (endpoint.ipv4, endpoint.ipv6)
                                        if address)
            yield pair

    def _bound_unbounded(self) -> None:
        """At the end of a full build: serve each unbounded network over the ``served_range`` of each of its
        listener addresses without a subnet (patches keep the ranges until the next full build)."""
        for network_id, (listeners, members) in self._unbounded.items():
            ranges = tuple(served_range(listener, members) for listener in listeners)
            self._served_subnets += ranges
            for gateway in self._networks[network_id].gateways:
                self._listener_subnets[gateway] += ranges

    def _gateway_entries(self, networks: Iterable[_NetworkNames]) -> dict[str, Entry]:
        """Gateway address -> the entry of the host's own name asked there: its network's gateways, A and AAAA."""
        entries = {}
        for network in networks:
            records = {}
            for gateway in network.gateways:
                packed = _packed_address(gateway)
                type_class = A_IN if len(packed) == 4 else AAAA_IN
                records[type_class] = self._record(type_class, packed)
            if records:
                entry = entry_of(records)
                for gateway in network.gateways:
                    entries[gateway] = entry
        return entries

    def _apply(self, change: _Change, changed: set[str], containers: Iterable[Attached]) -> Snapshot:
        """Replace the contributions of the changed containers, then derive the snapshot; the order matters."""
        leaving, arriving = self._replace_contributions(change, changed, containers)
        for network, names in change.affected.items():  # the networks' own names are final from here on
            for name in names:
                if name in network.crowded or name in network.view.merged:
                    self._refresh_name(network.view, name, change)
        for container_id, new, scope_key in arriving:  # take new scopes first: a view old and new ones use stays
            new.scope = self._take_scope(scope_key, change)
            self._containers[container_id] = new
        for old in leaving:
            self._drop_scope(old.scope)
        for network, names in change.affected.items():
            for view in network.views:
                if len(view.networks) > 1 and view not in change.fresh_views:
                    for name in names:
                        self._refresh_name(view, name, change)
        self._move_clients(change, leaving, [new for _, new, _ in arriving])
        self._refresh_scopes(change)
        if change.built_from_scratch and self._unbounded:
            self._bound_unbounded()
        self._finished = True
        return Snapshot(self._clients, tuple(self._scope_table), self._listeners, self._served_subnets,
                        self._network_upstreams, self._rotation_slot_count, self._host_entries,
                        self._listener_subnets)

    def _replace_contributions(self, change: _Change, changed: set[str],
                               containers: Iterable[Attached]) -> tuple[list[_ContainerNames], list[tuple]]:
        """Withdraw what the changed containers contributed to their networks' names, and add what they do now.

        Returns what left, and (container id, contribution, scope key) for
        what arrived. An endpoint that contributes exactly what it did before
        is kept as it is, so a connect or disconnect leaves the names of the
        container's other networks alone.
        """
        leaving = {container_id: self._containers.pop(container_id)
                   for container_id in changed if container_id in self._containers}
        arriving = []
        scope_keys: dict[ScopeKey, ScopeKey] = {}  # one key object per scope, not one per container
        for container, attached in containers:
            contribution = self._contribution(container, sorted(attached, key=_interface_order),
                                              leaving.get(container.id))
            if contribution is not None:  # on the default bridge only: no names, and dnsd does not serve it
                new, scope_key = contribution
                arriving.append((container.id, new, scope_keys.setdefault(scope_key, scope_key)))
        kept = {id(endpoint) for _, new, _ in arriving for endpoint in new.endpoints}
        for old in leaving.values():
            for endpoint in old.endpoints:
                if id(endpoint) not in kept:
                    self._withdraw(endpoint, change)
        left = {id(endpoint) for old in leaving.values() for endpoint in old.endpoints}
        for _, new, _ in arriving:
            for endpoint in new.endpoints:
                if id(endpoint) not in left:
                    self._contribute(endpoint, change)
        return list(leaving.values()), arriving

    def _move_clients(self, change: _Change, leaving: list[_ContainerNames], arriving: list[_ContainerNames]) -> None:
        """Point the addresses of the changed containers at their scopes; all removals first, as addresses move."""
        if not arriving and not any(old.addresses for old in leaving):
            return
        if not change.built_from_scratch:  # the last snapshot holds the client map: change a copy
            self._clients = self._clients.copy()
        for old in leaving:
            for address in old.addresses:
                del self._clients[address]
        for new in arriving:
            for address in new.addresses:
                self._clients[address] = new.scope.slot

    def _refresh_scopes(self, change: _Change) -> None:
        """New Scope objects for the scopes and listeners whose view, or a network's own names, got a new dict."""
        listeners_copied = change.built_from_scratch
        stale = set(change.rewritten)  # a scope also holds the own names of each of its networks (NAME.NETWORK)
        for view in change.rewritten:
            if len(view.networks) == 1:
                stale.update(view.networks[0].views)
        for view in stale:
            for use in view.scopes:
                self._scope_table[use.slot] = view.scope(use.networks, self._dialect, use.dns)
            if len(view.networks) == 1 and view in change.rewritten:
                network = view.networks[0]
                if not listeners_copied:
                    self._listeners, listeners_copied = self._listeners.copy(), True
                scope = view.scope((network.network,), self._dialect)
                for gateway in network.gateways:
                    self._listeners[gateway] = scope

    # -- contributions: what one container adds to its networks' names -------

    def _contribution(self, container: ServedContainer, attached: list[ServedEndpoint],
                      before: _ContainerNames | None) -> tuple[_ContainerNames, ScopeKey] | None:
        """What a container contributes, and the key of its scope; None if it is on no served network.

        Of its endpoints, those that contribute what they did ``before`` are the old objects.
        """
        unchanged = {endpoint.key: endpoint for endpoint in before.endpoints} if before is not None else {}
        endpoints = []
        for endpoint in attached:
            if endpoint.network_id in self._networks:
                names = self._endpoint_names(self._networks[endpoint.network_id], container, endpoint)
                endpoints.append(unchanged.get(names.key, names))
        if not endpoints:
            return None
        addresses = tuple(normalize_address(address) for endpoint in attached
                          for address in (endpoint.ipv4, endpoint.ipv6) if address)
        network_ids = tuple(endpoint.network.network.id for endpoint in endpoints)
        # a loopback --dns is a resolver inside the container: its scope is its own, asking from its namespace
        loopback = any(is_loopback(server.address) for server in _upstreams(container.dns))
        own_resolver = container.netns if loopback else ""
        return _ContainerNames(addresses, tuple(endpoints)), (network_ids, container.dns, own_resolver)

    def _endpoint_names(self, network: _NetworkNames, container: ServedContainer,
                        endpoint: ServedEndpoint) -> _EndpointNames:
        """An endpoint's names and its reverse names, with their entries (NAME.NETWORK is found via the scope).

        A reverse name answers ``NAME.NETWORK.`` (Docker) or every name of the container there, each bare
        (aardvark-dns), as spelled, in the order the dialect lists them.
        """
        packed = [_packed_address(address) for address in (endpoint.ipv4, endpoint.ipv6) if address]
        spelled = self._dialect.names_of(container, endpoint)
        names: dict[bytes, None] = {}  # a set that keeps its order: equal contributions get equal tuples
        for short_name in dict.fromkeys(name.lower() for name in spelled):
            wire = encode_name(short_name)
            if wire is not None:
                names[wire] = None

        records = {}
        for address in packed:
            type_class = A_IN if len(address) == 4 else AAAA_IN
            records[type_class] = self._record(type_class, address)
        address_entry = entry_of(records)
        if self._dialect.pointer_names == NAME_DOT_NETWORK:
            targets = [encode_name(f"{container.name}.{network.network.name}.")]
        else:
            targets = [encode_name(f"{name}.") for name in dict.fromkeys(spelled)]
        pointers = tuple(dict.fromkeys(self._record(PTR_IN, target) for target in targets if target is not None))
        if not pointers or not packed:
            return _EndpointNames(network, tuple(names), address_entry, (), ())
        return _EndpointNames(network, tuple(names), address_entry, tuple(reverse_name(address) for address in packed),
                              pointers)

    def _record(self, type_class: bytes, rdata: bytes) -> bytes:
        return b"\xc0\x0c" + type_class + self._ttl + len(rdata).to_bytes(2, "big") + rdata

    def _contribute(self, endpoint: _EndpointNames, change: _Change) -> None:
        """Add an endpoint's contributions to its network's names; crowded names get merged in ``_refresh_name``."""
        network = endpoint.network
        names, crowded = change.writable(network.view), network.crowded
        for name in endpoint.names:
            _add_contribution(names, crowded, name, endpoint.address_entry)
        for name in endpoint.reverse_names:
            _add_contribution(names, crowded, name, endpoint.pointer_entry)
        change.names_touched(network).update(endpoint.names, endpoint.reverse_names)

    def _withdraw(self, endpoint: _EndpointNames, change: _Change) -> None:
        network = endpoint.network
        names, crowded = change.writable(network.view), network.crowded
        for name in endpoint.names:
            _remove_contribution(names, crowded, name, endpoint.address_entry)
        for name in endpoint.reverse_names:
            _remove_contribution(names, crowded, name, endpoint.pointer_entry)
        change.names_touched(network).update(endpoint.names, endpoint.reverse_names)

    # -- views: the names of a set of networks -------------------------------

    def _refresh_name(self, view: _View, name: bytes, change: _Change) -> None:
        """Set a name of a view from its networks' contributions: one is used as is, several are merged.

        A container on a network with ``enable_icc=false`` cannot reach its neighbours there, so in a
        view over several networks the contributions of such networks count only when no other network
        of the view has the name (moby/moby#46162).
        """
        contributions: list[Entry] = []
        isolated: list[Entry] = []  # from networks without inter-container communication
        for network in view.networks:
            found = contributions if network.network.icc else isolated
            crowd = network.crowded.get(name)
            if crowd is not None:
                found += crowd
            elif name in network.view.names:
                found.append(network.view.names[name])
        if not contributions:  # an address on such a network is offered only when no other network has the name
            contributions = isolated
        old_shared = view.merged.get(name)
        shared = self._shared_entry(contributions) if len(contributions) > 1 else None
        entry = shared.entry if shared is not None else contributions[0] if contributions else None
        if view.names.get(name) is not entry:
            names = change.writable(view)
            if entry is None:
                del names[name]
            else:
                names[name] = entry
        if shared is not old_shared:
            if shared is None:
                del view.merged[name]
            else:
                shared.uses += 1
                view.merged[name] = shared
            if old_shared is not None:
                self._release(old_shared)

    def _view_of(self, network_ids: frozenset[str], change: _Change) -> _View:
        """The view over these networks; a new one starts as a copy of the largest network's names."""
        view = self._views.get(network_ids)
        if view is None:
            members = tuple(self._networks[network_id] for network_id in sorted(network_ids))
            largest = max(members, key=lambda member: len(member.view.names))
            view = _View(members, largest.view.names.copy())
            for name, shared in largest.view.merged.items():
                shared.uses += 1
                view.merged[name] = shared
            change.rewritten.add(view)
            change.fresh_views.add(view)
            for member in members:
                if member is not largest:
                    for name in member.view.names:
                        self._refresh_name(view, name, change)
            self._views[network_ids] = view
            for member in members:
                member.views.add(view)
        return view

    def _drop_view(self, view: _View) -> None:
        del self._views[frozenset(member.network.id for member in view.networks)]
        for member in view.networks:
            member.views.discard(view)
        for shared in view.merged.values():
            self._release(shared)

    # -- scopes ----------------------------------------------------------------

    def _take_scope(self, key: ScopeKey, change: _Change) -> _ScopeUse:
        use = self._scopes.get(key)
        if use is None:
            network_ids, dns, own_resolver = key
            view = self._view_of(frozenset(network_ids), change)
            if self._free_scope_slots:
                slot = self._free_scope_slots.pop()
            else:
                slot = len(self._scope_table)
                self._scope_table.append(None)
            use = self._scopes[key] = _ScopeUse(key, slot, view, tuple(self._networks[i].network for i in network_ids),
                                                _upstreams(dns, own_resolver))
            view.scopes.add(use)
            self._scope_table[slot] = view.scope(use.networks, self._dialect, use.dns)
        use.users += 1
        return use

    def _drop_scope(self, use: _ScopeUse) -> None:
        use.users -= 1
        if use.users == 0:
            del self._scopes[use.key]
            self._scope_table[use.slot] = None
            self._free_scope_slots.append(use.slot)
            use.view.scopes.discard(use)
            if not use.view.scopes and len(use.view.networks) > 1:
                self._drop_view(use.view)

    # -- entries shared by names with several contributions ------------------

    def _shared_entry(self, contributions: list[Entry]) -> _SharedEntry:
        """The entry with all the records of these contributions, made once per distinct set of records."""
        every = (record for entry in contributions for records in records_in(entry) for record in _records_of(records))
        # Docker's: sorted, so equal sets are one entry whatever the order; aardvark-dns's: in the order contributed
        # (its networks, then the lines of each file), as it answers them
        records = tuple(sorted(set(every)) if self._dialect.rotate else dict.fromkeys(every))
        shared = self._shared.get(records)
        if shared is None:
            shared = self._retired.pop(records, None)
            if shared is None:
                shared = _SharedEntry(records, self._merged_entry(records))
            else:
                shared.uses = 0
            self._shared[records] = shared
        return shared

    def _merged_entry(self, records: tuple[bytes, ...]) -> Entry:
        """The entry of a name with these records, in this order; several A or AAAA records rotate if the dialect
        rotates them."""
        by_type: dict[bytes, list[bytes]] = {}
        for record in records:
            by_type.setdefault(record[2:6], []).append(record)
        rotate = self._dialect.rotate
        return entry_of({type_class: found[0] if len(found) == 1 else
                         RecordSet(tuple(found),
                                   self._take_rotation_slot() if rotate and type_class in (A_IN, AAAA_IN) else -1)
                         for type_class, found in by_type.items()})

    def _release(self, shared: _SharedEntry) -> None:
        shared.uses -= 1
        if shared.uses == 0:
            del self._shared[shared.records]
            self._free_rotation_slots_of(shared.entry)

    def _take_rotation_slot(self) -> int:
        if self._free_rotation_slots:
            return self._free_rotation_slots.pop()
        self._rotation_slot_count += 1
        return self._rotation_slot_count - 1

    def _free_rotation_slots_of(self, entry: Entry) -> None:
        for records in records_in(entry):
            if records.__class__ is RecordSet and records.rotation_slot >= 0:
                self._free_rotation_slots.append(records.rotation_slot)


class _Change:
    """What one build or patch has touched so far."""

    __slots__ = ("affected", "rewritten", "fresh_views", "built_from_scratch")

    def __init__(self, writable_views: Iterable[_View] | None = None):
        self.affected: dict[_NetworkNames, set[bytes]] = {}  # network -> its names whose contributions changed
        self.built_from_scratch = writable_views is not None  # no earlier snapshot shares the dicts
        self.rewritten: set[_View] = set(writable_views or ())  # views whose names dict is new, so writable
        self.fresh_views: set[_View] = set()  # views made in this change, from their networks' final names

    def names_touched(self, network: _NetworkNames) -> set[bytes]:
        touched = self.affected.get(network)
        if touched is None:
            touched = self.affected[network] = set()
        return touched

    def writable(self, view: _View) -> Names:
        """The view's names, copied first if a snapshot already holds them."""
        if view not in self.rewritten:
            view.names = view.names.copy()
            self.rewritten.add(view)
        return view.names


class _NetworkNames:
    """A served network: its own names, and the contributions of its names that several endpoints hold."""

    __slots__ = ("network", "wire_name", "gateways", "crowded", "view", "views")

    def __init__(self, network: ServedNetwork):
        self.network = network
        self.wire_name = encode_name(network.name.lower())  # keys are folded as questions are (moby/moby#28689)
        self.gateways = tuple(normalize_address(address) for address in network.dns_addresses)  # its listeners
        self.crowded: dict[bytes, list[Entry]] = {}  # name -> its contributions, for names with two or more
        self.view = _View((self,), {})  # this network alone: what its listeners answer
        self.views = {self.view}  # every view this network is part of


class _View:
    """The names a set of networks shows together; a name on several of them gets the union of their records."""

    __slots__ = ("networks", "names", "merged", "scopes")

    def __init__(self, networks: tuple[_NetworkNames, ...], names: Names):
        self.networks = networks
        self.names = names  # shared with the snapshots: replaced by a copy before a change, never changed in place
        self.merged: dict[bytes, _SharedEntry] = {}  # names whose entry is a shared one (several contributions)
        self.scopes: set[_ScopeUse] = set()

    def scope(self, networks: tuple[ServedNetwork, ...], dialect: Dialect, dns: tuple[Upstream, ...] = ()) -> Scope:
        """A Scope of these names as they are now, for sources on ``networks`` (the view's, in their order).

        Over several networks, in Docker's dialect, the scope prefers, per gateway it is asked through, the
        names of that gateway's network when it has inter-container communication (see ``Scope.by_listener``);
        in aardvark-dns's, a name has the addresses of all of them. The qualified names are NAME.NETWORK
        (Docker's) or NAME.SEARCH-DOMAIN for every name of the view (aardvark-dns's).
        """
        if dialect.qualified_names:
            qualified = {member.wire_name: member.view.names for member in self.networks
                         if member.wire_name is not None}
        else:
            suffix = dialect.search_suffix
            qualified = {suffix: self.names} if suffix is not None else {}
        if len(self.networks) == 1 or not dialect.prefer_asked_network:
            return Scope(self.names, networks, dns, qualified)
        by_listener = {}
        for member in self.networks:
            if member.network.icc:
                preferring = PreferringScope(member.view.names, self.names, networks, dns, qualified)
                for gateway in member.gateways:
                    by_listener[gateway] = preferring
        return Scope(self.names, networks, dns, qualified, by_listener or None)


class _ScopeUse:
    """A scope in its slot of the scope table, and how many containers have it."""

    __slots__ = ("key", "slot", "view", "networks", "dns", "users")

    def __init__(self, key: ScopeKey, slot: int, view: _View, networks: tuple[ServedNetwork, ...],
                 dns: tuple[Upstream, ...]):
        self.key = key
        self.slot = slot
        self.view = view
        self.networks = networks
        self.dns = dns
        self.users = 0


class _SharedEntry:
    """The entry of names with several contributions, counted by the view names that hold it."""

    __slots__ = ("records", "entry", "uses")

    def __init__(self, records: tuple[bytes, ...], entry: Entry):
        self.records = records
        self.entry = entry
        self.uses = 0


class _EndpointNames:
    """What one endpoint contributes to its network: an entry for its names, another for its reverse names."""

    __slots__ = ("network", "names", "address_entry", "reverse_names", "pointer_entry")

    def __init__(self, network: _NetworkNames, names: tuple[bytes, ...], address_entry: Entry,
                 reverse_names: tuple[bytes, ...], pointers: tuple[bytes, ...]):
        self.network = network
        self.names = names
        self.address_entry = address_entry  # no other endpoint of its network has these records: its addresses
        self.reverse_names = reverse_names
        # the PTR records of its reverse names, in their order: one record as its bytes (Docker's one name)
        self.pointer_entry = None if not pointers else pointers[0] if len(pointers) == 1 else RecordSet(pointers, -1)

    @property
    def key(self) -> tuple:
        """Equal for two endpoints that contribute the same names with the same records."""
        pointers = self.pointer_entry
        if pointers.__class__ is RecordSet:
            pointers = _records_of(pointers)
        return (self.network, self.names, self.reverse_names, records_in(self.address_entry), pointers)


class _ContainerNames:
    """What one container on served networks contributes: names per endpoint, and its addresses as a client."""

    __slots__ = ("addresses", "endpoints", "scope")

    def __init__(self, addresses: tuple[str, ...], endpoints: tuple[_EndpointNames, ...]):
        self.addresses = addresses  # of all its endpoints, the default bridge's too
        self.endpoints = endpoints
        self.scope: _ScopeUse | None = None


def _add_contribution(names: Names, crowded: dict[bytes, list[Entry]], name: bytes, contribution: Entry) -> None:
    crowd = crowded.get(name)
    if crowd is not None:
        crowd.append(contribution)
    elif name in names:  # held by one contribution so far: the entry there is it
        crowded[name] = [names[name], contribution]
    else:
        names[name] = contribution


def _remove_contribution(names: Names, crowded: dict[bytes, list[Entry]], name: bytes, contribution: Entry) -> None:
    crowd = crowded.get(name)
    if crowd is None:
        del names[name]
    else:
        crowd.remove(contribution)
        if len(crowd) == 1:  # one left: the name maps straight to it again
            names[name] = crowd[0]
            del crowded[name]


def _records_of(records: bytes | RecordSet) -> tuple[bytes, ...]:
    """The answer records of a lone record or a record set, each alone (a set of PTR records differs in size)."""
    if records.__class__ is bytes:
        return (records,)
    wire, found, start = records.wire, [], 0
    while start < len(wire):
        end = start + 12 + int.from_bytes(wire[start + 10:start + 12], "big")  # name pointer, type, class, TTL, length
        found.append(wire[start:end])
        start = end
    return tuple(found)


def _interface_order(endpoint: ServedEndpoint) -> tuple[int, str]:
    ifname = endpoint.ifname or ""  # unknown: the source's own order stays (the sort is stable)
    return len(ifname), ifname  # eth2 before eth10


def served_range(listener: Address, members: Iterable[Address]) -> Subnet:
    """The range dnsd serves on ``listener`` for a network whose source names no subnet of its family (Podman's
    config directory names none): the narrowest around ``listener``, at least ``MIN_SERVED_PREFIX`` wide, that
    holds the network's container addresses of that family among ``members``. Sources in it that are no
    container (the host side, a container whose record is on its way) are answered there, and the reverse
    names of its addresses are answered here, never forwarded (docs/podman.md)."""
    prefix = MIN_SERVED_PREFIX[listener.version]
    subnet = ipaddress.ip_network(f"{listener}/{prefix}", strict=False)
    for member in members:
        while member.version == listener.version and member not in subnet:
            prefix -= 1
            subnet = ipaddress.ip_network(f"{listener}/{prefix}", strict=False)
    return subnet


def _packed_address(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _upstreams(servers: Iterable[str], loopback_netns: str = "") -> tuple[Upstream, ...]:
    """Parse stored --dns servers; netcore validated them, so one that does not parse is skipped.

    Loopback servers are asked from ``loopback_netns`` (a container's own
    namespace for its --dns; see ``Upstream``), the others from dnsd's own.
    """
    parsed = []
    for server in servers:
        try:
            address, port = parse_upstream(server)
        except ValueError:
            continue
        parsed.append(Upstream(address, port, loopback_netns if is_loopback(address) else ""))
    return tuple(parsed)
