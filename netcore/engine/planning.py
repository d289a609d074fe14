"""Planning: from a checked request to the rows an action records, before anything is built.

Names, IDs, subnets, gateways and addresses (netcore.ipam), interface and veth names, MACs, and host ports
(netcore.ports), decided against what the store holds and what the gateway namespace has (its routes and
links, a host port bindable now). Each ``plan_*`` that records rows runs inside the caller's transaction,
so a conflict found on the way writes nothing.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import replace

from netcore import ipam, network as drivers, ports
from netcore.engine.context import Context
from netcore.errors import Conflict, NetcoreError
from netcore.model import (
    DEFAULT_BRIDGE,
    DEFAULT_BRIDGE_DEVICE,
    DEFAULT_BRIDGE_SUBNET,
    DNS_PORT,
    MODE_BRIDGE,
    MODE_CONTAINER,
    MODE_HOST,
    STATE_CREATING,
    STATE_RUNNING,
    Container,
    Endpoint,
    MainProcess,
    Network,
    PortBinding,
    parse_dns_server,
)
from netcore.network.bridge import OPT_BRIDGE_NAME
from netcore.network.overlay import NAME as OVERLAY
from netcore.ports import HostPort
from netcore.ports.holder import PortError
from netcore.requests import Attachment, ContainerSpec, NetworkSpec

_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quirky", "serene", "tender", "vibrant", "wizardly", "zealous")
_NAMES = ("babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "knuth", "lamport",
          "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "turing", "wozniak")


def _show_host(host_ip: str) -> str:
    """A binding's host address as Docker's messages show it: every address is ``0.0.0.0``."""
    return f"[{host_ip}]" if ":" in host_ip else host_ip or "0.0.0.0"


def check_no_dns_loop(new: Network | Container, networks: list[Network], containers: list[Container]) -> None:
    """NetcoreError (one line) if making ``new`` (a network or container, with the others already there) would
    give a ``--dns`` server that is where dnsd itself serves: a network's DNS address (``Network.dns_addresses``)
    on port 53. dnsd would forward the names it does not hold to itself (issue 24: one query became 129), as
    netavark refuses such a server. Checked: ``new``'s servers against every network, and for a new network,
    every other network's and container's servers against its addresses."""
    def served_by(candidates: list[Network]) -> dict:
        return {ipaddress.ip_address(address): network for network in candidates for address in network.dns_addresses}

    is_network = isinstance(new, Network)
    checks = [(new, served_by([*networks, new] if is_network else networks))]
    if is_network:
        served = served_by([new])
        checks += [(owner, served) for owner in (*networks, *containers)]
    for owner, served in checks:
        for server in owner.dns:
            address, port = parse_dns_server(server)
            network = served.get(ipaddress.ip_address(address)) if port == DNS_PORT else None
            if network is not None:
                kind = "network" if isinstance(owner, Network) else "container"
                raise NetcoreError(f"--dns {server} of {kind} {owner.name} is where dnsd serves network "
                                   f"{network.name}: dnsd would forward its own queries to itself")


class Planner:
    """Plans the rows of ``ctx``'s actions; ``dnsd_addresses`` says where dnsd listens (a port published on
    dnsd's port shares it with those sockets: netcore.ports.holder.bind)."""

    def __init__(self, ctx: Context, dnsd_addresses):
        self.ctx = ctx
        self._dnsd_addresses = dnsd_addresses
        self.overlays = None  # netcore.engine.overlay.Overlays: overlay networks' addresses, the cluster's names

    # -- networks --------------------------------------------------------------------------------------------

    def taken_subnets(self, shared: set = frozenset()) -> dict[str, ipam.IPNetwork]:
        """Subnets a new network must not overlap, by what takes them: other networks' and the gateway
        namespace's routes, but the ``shared`` ones, (destination, link) pairs the network's driver expects to
        overlap (``NetworkDriver.shared_routes``: a macvlan parent's connected route)."""
        store = self.ctx.store
        taken: dict[str, ipam.IPNetwork] = {}
        for n in store.networks():
            taken[f"network {n.name}"] = ipaddress.ip_network(n.subnet)
            if n.subnet6:
                taken[f"network {n.name} (IPv6)"] = ipaddress.ip_network(n.subnet6)
        bridges = {ipaddress.ip_network(n.subnet) for n in store.networks()}
        for route in self.ctx.kernel.routes():
            destination = route.destination
            if destination not in bridges and not destination.is_link_local and tuple(route) not in shared:
                via = f" via {route.device}" if route.device else ""
                taken[f"route {destination}{via} in the gateway namespace"] = destination
        return taken

    def plan_network(self, spec: NetworkSpec, options: dict[str, str], network_id: str) -> Network:
        """The row of network ``spec`` (checked; ``options`` as its driver validated them), state
        ``creating``: Conflict for a taken name or device; a given subnet must overlap nothing but the
        routes the driver shares, else the lowest free subnet of Docker's pools; an IPv6 subnet (a ULA /64
        from the ID when none is given); then the driver's own plan (netcore.network). Warnings go to the
        report. Call inside the transaction that inserts it."""
        store, kernel = self.ctx.store, self.ctx.kernel
        driver = drivers.get(spec.driver)
        device = driver.device_name(network_id, options)
        if store.find_network(spec.name):
            raise Conflict(f"network with name {spec.name} already exists")
        overlays = self.overlays.cluster_names() if self.overlays is not None else {}
        if spec.name in overlays:
            raise Conflict(f"network with name {spec.name} already exists: an overlay network of the cluster")
        if any(n.bridge == device for n in store.networks()):
            raise Conflict(f"bridge name {device} is already used by another network")
        links = kernel.links()
        clustered = {f"overlay network {name} of the cluster": subnet for name, subnet in overlays.items()}
        if spec.subnet4:  # a given subnet may share the routes the driver expects (macvlan: the parent's LAN)
            subnet = ipam.parse_subnet(spec.subnet4)
            ipam.check_no_overlap(subnet, {**self.taken_subnets(driver.shared_routes(options, links)), **clustered})
        taken = {**self.taken_subnets(), **clustered}
        if not spec.subnet4:
            subnet = ipam.choose_subnet(taken.values())
        gateway = ipam.plan_gateway(subnet, spec.gateway4)
        ip_range = ipam.plan_ip_range(subnet, spec.ip_range)
        subnet6 = gateway6 = None
        if spec.ipv6:
            subnet6 = ipam.parse_subnet(spec.subnet6) if spec.subnet6 else ipam.ula_subnet(network_id)
            ipam.check_no_overlap(subnet6, taken)
            gateway6 = ipam.plan_gateway(subnet6, spec.gateway6)
        network = Network(
            id=network_id, name=spec.name, bridge=device, subnet=str(subnet), gateway=str(gateway),
            ip_range=str(ip_range) if ip_range else None, subnet6=str(subnet6) if subnet6 else None,
            gateway6=str(gateway6) if gateway6 else None, internal=spec.internal, dns=spec.dns, options=options,
            labels=dict(spec.labels), driver=driver.name, routed=driver.routed, state=STATE_CREATING,
            created=self.ctx.clock.now())
        network = driver.plan_network(network, store.networks(), links)
        self._warn_aux_in_range(network)
        check_no_dns_loop(network, store.networks(), store.containers())
        return network

    def _warn_aux_in_range(self, network: Network) -> None:
        """A warning for each of ``network``'s ``aux_addresses`` (the host's own on a macvlan parent) inside the
        range its containers get addresses from: IPAM keeps it out, but the LAN's other machines are not
        known to netcore (issue 23, item 1)."""
        subnet = ipaddress.ip_network(network.subnet)
        pool = ipaddress.ip_network(network.ip_range) if network.ip_range else subnet
        for name, address in network.aux_addresses.items():
            if ipaddress.ip_address(address) in pool:
                self.ctx.report.warnings.append(
                    f"network {network.name}: the host's address {address} ({name}) is inside {pool}, where "
                    "containers get their addresses; netcore keeps it out, but not the LAN's other machines' "
                    "addresses: give --ip-range a share of the LAN that no other machine uses")

    def default_bridge_id(self) -> str:
        """The default bridge's 64-hex ID: drawn once per state dir, kept in the store's bookkeeping."""
        return self.ctx.store.meta_setdefault("default_bridge_id", secrets.token_hex(32))

    def plan_default_bridge(self) -> Network:
        """The default ``bridge`` as the first action builds it: Docker's 172.17.0.0/16 unless a network or a
        route of the gateway namespace overlaps it, else the lowest free pool subnet; its ID is the state
        dir's own (``default_bridge_id``), so it is the same before and after it is built."""
        taken = {} if self.ctx.gateway_gone() else self.taken_subnets()  # no gateway namespace: no route either
        preferred = ipaddress.ip_network(DEFAULT_BRIDGE_SUBNET)
        subnet = (preferred if not any(preferred.overlaps(t) for t in taken.values())
                  else ipam.choose_subnet(taken.values()))
        return Network(id=self.default_bridge_id(), name=DEFAULT_BRIDGE, bridge=DEFAULT_BRIDGE_DEVICE,
                       subnet=str(subnet), gateway=str(ipam.plan_gateway(subnet, None)),
                       options={OPT_BRIDGE_NAME: DEFAULT_BRIDGE_DEVICE}, state=STATE_CREATING,
                       created=self.ctx.clock.now())

    # -- containers ------------------------------------------------------------------------------------------

    def generate_name(self) -> str:
        """Docker's kind of name, ``adjective_scientist``, one no container has."""
        while True:
            name = f"{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"
            if not self.ctx.store.find_container(name):
                return name

    def plan_container(self, spec: ContainerSpec, container_id: str,
                       requests: list[ports.PortRequest]) -> tuple[Container, list[Endpoint]]:
        """Record container ``spec`` (checked) and its endpoints ``creating``, and its published ports
        (``requests``, netcore.ports.plan_requests); Conflict for a taken name, NotFound for an unknown
        network or peer. Call inside the transaction that records them."""
        store = self.ctx.store
        name = spec.name or self.generate_name()
        if store.find_container(name):
            raise Conflict(f"the container name {name!r} is already in use")
        namespace, peer = f"{self.ctx.ns_prefix}{container_id[:12]}", None
        if spec.mode == MODE_HOST:
            namespace = self.ctx.namespace or ""
        elif spec.mode == MODE_CONTAINER:
            target = store.container(spec.peer)
            if target.mode == MODE_CONTAINER:
                target = store.container(target.peer)
            namespace, peer = target.netns, target.id
        container = Container(id=container_id, name=name, hostname=spec.hostname or container_id[:12],
                              netns=namespace, mode=spec.mode, peer=peer, dns=spec.dns, labels=dict(spec.labels),
                              state=STATE_CREATING, created=self.ctx.clock.now(), dns_search=spec.dns_search,
                              extra_hosts=spec.extra_hosts)
        check_no_dns_loop(container, store.networks(), [])
        store.insert(container)
        if spec.command:
            store.put_process(MainProcess(container.id, spec.command))
        endpoints = []
        if spec.mode == MODE_BRIDGE:
            for attachment in spec.attachments:
                endpoints.append(self.plan_endpoint(container, store.network(attachment.network), attachment))
            if requests:
                networks = {n.id: n for n in store.networks()}
                target = ports.target_endpoint(endpoints, networks)
                self.plan_ports(container, networks[(target or endpoints[0]).network_id], requests)
        return container, endpoints

    def plan_endpoint(self, container: Container, network: Network, attachment: Attachment) -> Endpoint:
        """Allocate ``container``'s next interface name (``ethN``), a veth name, addresses (``attachment``'s
        fixed ones, else the lowest free: netcore.ipam) and a MAC; record the endpoint ``creating``."""
        store = self.ctx.store
        if network.state != STATE_RUNNING:
            raise NetcoreError(f"network {network.name} is not ready")
        if not network.dns_enabled and attachment.aliases:
            raise NetcoreError("network-scoped aliases are supported only for user-defined networks")
        if not network.dns_enabled and (attachment.ip or attachment.ip6):
            raise NetcoreError("user specified IP address is supported on user defined networks only")
        used = {e.ifname for e in store.endpoints_of_container(container.id)}
        ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        endpoint_id = secrets.token_hex(32)
        if network.driver == OVERLAY and self.overlays is not None:  # claimed cluster-wide, in etcd
            address = ipaddress.ip_address(self.overlays.allocate(network, endpoint_id, attachment.ip))
        else:
            taken = [*store.addresses_on_network(network.id), *network.reserved_addresses]
            address = ipam.allocate_address(ipaddress.ip_network(network.subnet),
                                            ipaddress.ip_address(network.gateway), taken,
                                            ipaddress.ip_network(network.ip_range) if network.ip_range else None,
                                            attachment.ip)
        address6 = None
        if network.subnet6:
            address6 = ipam.allocate_address(ipaddress.ip_network(network.subnet6),
                                             ipaddress.ip_address(network.gateway6),
                                             [*store.addresses_on_network(network.id), *network.reserved_addresses],
                                             None, attachment.ip6)
        elif attachment.ip6:
            raise NetcoreError(f"--ip6 {attachment.ip6}: network {network.name} has no IPv6")
        endpoint = Endpoint(id=endpoint_id, container_id=container.id, network_id=network.id,
                            ifname=ifname, host_ifname=f"veth{secrets.token_hex(4)[:7]}", mac=ipam.mac_for(address),
                            ipv4=str(address), ipv6=str(address6) if address6 else None,
                            aliases=tuple(dict.fromkeys(attachment.aliases)), state=STATE_CREATING)
        store.insert(endpoint)
        return endpoint

    def plan_ports(self, container: Container, network: Network, requests: list[ports.PortRequest]) -> None:
        """Choose a host port for each of ``requests`` (netcore.ports.plan_requests: merged, exact ports
        first) and record the bindings. Each port is checked free in the store (netcore.ports.conflict: every
        address collides with each one) and bindable in the gateway namespace now; a fixed port that is not
        is one line, a range or an ephemeral request takes the next that is."""
        if network.internal:
            raise NetcoreError(f"-p needs a network that is not internal: nothing outside network {network.name} "
                               "reaches its containers (--internal)")
        if not network.routed_by_gateway:  # Docker ignores -p there; one line says so instead
            raise NetcoreError(f"-p needs a bridge network: a container on {network.driver} network {network.name} "
                               "is reached on its own address on the LAN, not through the host")
        store = self.ctx.store
        taken = store.ports()
        local_range = None
        for request in requests:
            if request.host_ports is None:
                if local_range is None:
                    local_range = self.ctx.ports.local_range()
                meta = f"ports.last.{request.protocol}"
                last = store.meta(meta)
                candidates: Iterator[int] = ports.ephemeral_candidates(*local_range, int(last) if last else None)
                where = f"an ephemeral port ({local_range[0][0]}-{local_range[0][1]})"
            else:
                first, end = request.host_ports
                candidates = iter(range(first, end + 1))
                where = f"port {first}" if first == end else f"ports {first}-{end}"
            binding = self._free_port(container, network, request, candidates, taken)
            if binding is None:
                raise Conflict(f"no free host port for {ports.port_key(request.protocol, request.container_port)}"
                               f" of container {container.name} among {where}")
            if request.host_ports is None:
                store.set_meta(meta, str(binding.host_port))
            taken.append(binding)
            store.insert(binding)

    def _free_port(self, container: Container, network: Network, request: ports.PortRequest,
                   candidates: Iterable[int], taken: list[PortBinding]) -> PortBinding | None:
        """The binding of ``request`` to the first of ``candidates`` free in ``taken`` and in the kernel, or
        None; a fixed port that is taken raises Conflict (by a container) or PortError (by a process)."""
        fixed = request.fixed
        addresses = [request.host_ip] if request.host_ip else ["0.0.0.0", "::"] if network.subnet6 else ["0.0.0.0"]
        for port in candidates:
            other = ports.conflict(request.protocol, request.host_ip, port, taken)
            if other is not None:
                if fixed and other.container_id == container.id:  # plan_requests rules this out; never "by itself"
                    raise NetcoreError(f"-p {request.spec} collides with another -p of container {container.name} "
                                       f"on {request.protocol} host port {port}", exit_code=2)
                if fixed:
                    owner = "container " + (self.ctx.store.find_container_by_id(other.container_id) or container).name
                    raise Conflict(f"Bind for {_show_host(request.host_ip)}:{port} failed: port is already "
                                   f"allocated ({request.protocol}, published by {owner})")
                continue
            try:
                for address in addresses:
                    self.ctx.ports.check(HostPort(request.protocol, address, port), self._dnsd_addresses())
            except PortError:
                if fixed:
                    raise
                continue
            return PortBinding(container.id, request.protocol, request.container_port, request.host_ip, port,
                               request.requested)
        return None


def shown(network: Network) -> Network:
    """A planned network as reads show it before it is built (running, no creation time)."""
    return replace(network, state=STATE_RUNNING, created="")
