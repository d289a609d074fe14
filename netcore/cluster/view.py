"""The in-memory mirror of the cluster that one watch feeds, and its change feed. Pure: no I/O.

``ClusterView.apply(events)`` takes the events of a ``netcore.cluster.store.PrefixFollower`` over
``/netcore/v1/`` (the first batch is the listing) and keeps the hosts, the overlay networks and their endpoints
by network. Applying is idempotent: a PUT of the record already held and a DELETE of a key not held change
nothing, so duplicate events (a watch resumed from its last revision, inclusive) are harmless. Every real
change gets a generation number and a ``Change`` in the feed, which the data plane (FDB and neighbour entries
of the network, or of every network when a host's VTEP changed) and dnsd (a record source: generation ->
changed ids, as CoreDNS's kubernetes plugin answers from memory fed by a watch) read.

Allocation keys (``alloc/``) are not mirrored: they are read by the allocating transactions themselves.
A value that cannot be read counts as absent; it and unknown fields of a newer release are reported once
each in ``warnings`` (never raised).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from netcore.cluster import keys
from netcore.cluster.dataplane import RemoteEndpoint
from netcore.cluster.keys import EndpointRecord, HostRecord, NetworkRecord, RecordError
from netcore.cluster.store import PUT, Event

CHANGE_LOG = 4096  # changes kept for changes_since; a reader further behind rebuilds from the whole view


@dataclass(frozen=True)
class Change:
    """One change of the view: ``kind`` is keys.KIND_HOST, KIND_NETWORK or KIND_ENDPOINT; ``ident`` the host
    name, network ID or endpoint ID; ``network_id`` the endpoint's network (None otherwise); ``before`` and
    ``after`` the records (None: absent), so a reader knows what to remove as well as what to add."""

    generation: int
    kind: str
    ident: str
    network_id: str | None
    before: HostRecord | NetworkRecord | EndpointRecord | None
    after: HostRecord | NetworkRecord | EndpointRecord | None


class ClusterView:
    """Hosts, overlay networks and endpoints of the cluster, as the watch last said."""

    def __init__(self):
        self.hosts: dict[str, HostRecord] = {}
        self.networks: dict[str, NetworkRecord] = {}
        self.endpoints: dict[str, dict[str, EndpointRecord]] = {}  # network ID -> endpoint ID -> record
        self.generation = 0
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._log: deque[Change] = deque(maxlen=CHANGE_LOG)

    # -- feeding -----------------------------------------------------------------------------------------------

    def apply(self, events: Iterable[Event]) -> list[Change]:
        """Apply watch events in order; returns the changes they made (none for a duplicate)."""
        changes = []
        for event in events:
            change = self._apply_one(event)
            if change is not None:
                changes.append(change)
        return changes

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)

    def _apply_one(self, event: Event) -> Change | None:
        try:
            ref = keys.parse_key(event.key)
        except RecordError as err:
            self._warn(f"ignored: {err}")
            return None
        if ref.kind not in (keys.KIND_HOST, keys.KIND_NETWORK, keys.KIND_ENDPOINT):
            return None
        record = None
        if event.kind == PUT:
            try:
                decoded = keys.decode(event.value, keys.RECORD_OF_KIND[ref.kind], event.key)
            except RecordError as err:
                self._warn(f"ignored (written by a newer netcore?): {err}")
            else:
                record = decoded.record
                if decoded.unknown:
                    self._warn(f"{event.key}: ignored fields {', '.join(decoded.unknown)} (a newer netcore's)")
        match ref.kind:
            case keys.KIND_HOST:
                return self._set(self.hosts, ref.parts[0], record, keys.KIND_HOST, None)
            case keys.KIND_NETWORK:
                return self._set(self.networks, ref.parts[0], record, keys.KIND_NETWORK, None)
            case _:
                network_id, endpoint_id = ref.parts
                if record is not None and (record.id != endpoint_id or record.network_id != network_id):
                    self._warn(f"{event.key}: ignored, its record names another endpoint or network")
                    record = None
                table = self.endpoints.setdefault(network_id, {})
                change = self._set(table, endpoint_id, record, keys.KIND_ENDPOINT, network_id)
                if not table:
                    del self.endpoints[network_id]
                return change

    def _set(self, table: dict, ident: str, record, kind: str, network_id: str | None) -> Change | None:
        before = table.get(ident)
        if before == record:
            return None
        if record is None:
            del table[ident]
        else:
            table[ident] = record
        self.generation += 1
        change = Change(self.generation, kind, ident, network_id, before, record)
        self._log.append(change)
        return change

    # -- reading -----------------------------------------------------------------------------------------------

    def changes_since(self, generation: int) -> list[Change] | None:
        """The changes after ``generation``, oldest first; None if the log no longer reaches back that far
        (the reader rebuilds from the whole view)."""
        if generation >= self.generation:
            return []
        if not self._log or self._log[0].generation > generation + 1:
            return None
        return [change for change in self._log if change.generation > generation]

    def network_named(self, name: str) -> NetworkRecord | None:
        return next((n for n in self.networks.values() if n.name == name), None)

    def endpoints_of(self, network_id: str) -> list[EndpointRecord]:
        return sorted(self.endpoints.get(network_id, {}).values(), key=lambda e: e.id)

    def remote_endpoints(self, network_id: str, local_host: str) -> list[RemoteEndpoint]:
        """What the data plane of ``local_host`` must reach on ``network_id``: every endpoint of another host
        whose host record (its VTEP address) is known; an endpoint of a host without a record is left out
        (its lease, shared with the host key, is ending)."""
        remote = []
        for endpoint in self.endpoints_of(network_id):
            if endpoint.host == local_host:
                continue
            host = self.hosts.get(endpoint.host)
            if host is not None:
                remote.append(RemoteEndpoint(endpoint.ipv4, endpoint.mac, host.address))
        return remote

    def networks_affected(self, changes: Iterable[Change]) -> set[str] | None:
        """The networks whose data plane ``changes`` touch; None: all of them (a host record changed)."""
        touched: set[str] = set()
        for change in changes:
            if change.kind == keys.KIND_HOST:
                return None
            touched.add(change.network_id if change.kind == keys.KIND_ENDPOINT else change.ident)
        return touched
