"""netcore's nftables ruleset, rendered from the desired firewall state: pure, no I/O.

The firewall seam (``netcore.firewall``) hands over the desired state after
every action, and ``render`` turns it into the whole ruleset as an ``nft -f -``
script. netcore owns exactly one table, ``inet netcore``, and
replaces it whole, atomically, on every change:

    table inet netcore {}          # make sure it exists, so that ...
    delete table inet netcore      # ... the delete succeeds whether or not it did
    table inet netcore { ... }     # the whole new table

``nft -f`` applies a file as one netlink transaction: the old table is never
gone without the new one in place, and a rejected script changes nothing.
Nothing is ever decided by reading the live ruleset, the way netavark's
nftables driver did, matching its own rules back by subnet or port, and
leaked rules whenever a match missed (containers/netavark#1068: a port
published for tcp and udp left its rules behind). What is not in the desired
state is simply not rendered.

The table (chain priorities as nft names them; lower runs first):

- ``input``: ``type filter hook input priority filter - 10`` (-10), policy
  accept: what reaches the gateway namespace itself.

  - dnsd's port on each address it serves (the sets ``dnsd4``/``dnsd6``),
    issue 24 item 1: the gateway namespace itself (``iifname "lo"``) and each
    network's own subnet arriving on its own link (bridge, shim, a LAN
    network's parent) reach it; any other source inside a netcore subnet
    (the sets ``subnets4``/``subnets6``) arrived on a link that is not its
    network's, so it is spoofed (on the uplink: blind recursion for
    outsiders; a container posing as another network's) and dropped; an
    internal network's subnet reaches only its own gateway (a spare address
    asking another network's gateway was a way out, the class of Docker's
    CVE-2024-29018). Sources outside every netcore subnet reach dnsd, which
    REFUSES them, as it REFUSES a source of one network asking another's
    gateway (``dnsd.core.snapshot``). dnsd answers by source address and cannot
    see the interface; the firewall can, for dnsd's port alone, which is
    what strict reverse-path filtering would give without changing
    ``rp_filter``, a setting of the whole namespace (the host's own in host
    mode), left as it is. A rule costs dnsd nothing per query (its
    remembered replies' fast path checks nothing more), and the kernel drops
    what it refuses before dnsd reads it.
  - an internal network (``--internal``, a bridge or a shim): besides DNS to
    its own gateway, only replies to what the gateway namespace opened and
    IPv6 neighbour discovery; anything else from it is dropped (issue 23 item
    2: a container that adds a default route through its gateway reached the
    gateway namespace's services on every address, moby/libnetwork#1151).
    The gateway namespace still reaches its containers (moby/moby#47356).
    A normal network's containers reach the gateway namespace's services, as
    on Docker and Podman (``host.netcore.internal`` names it for that).

  nftables runs every base chain of a hook in priority order; an ``accept``
  ends only the chain it is in, while a ``drop`` anywhere is final. So the
  accepts cannot override a host whose own input chain (hand-written,
  iptables-nft's ``filter INPUT``, firewalld) drops by policy: such a host
  must accept the same packets in its own chain, e.g.
  ``iifname "br-*" meta l4proto { tcp, udp } th dport 53 accept``. Priority
  -10 puts the chain before the conventional filter chains (0), so with
  ``nft monitor trace`` its verdict shows up first.
- ``dns-untracked-in`` / ``dns-untracked-out``: ``type filter hook
  prerouting`` / ``output priority raw`` (-300), policy accept: UDP queries to
  dnsd on each gateway address, and its replies, skip connection tracking
  (``notrack``). A query is one datagram and its answer: tracking it costs a
  conntrack entry and a lookup each way for nothing, about a fifth of dnsd's
  CPU per query (``bench/dns.sh``); it also keeps a query flood from filling
  the conntrack table. TCP is tracked as any connection.
- ``forward``: ``type filter hook forward priority filter`` (0), policy accept,
  three rules: ``iifname vmap @forward-internal``, ``oifname vmap
  @forward-in``, ``iifname vmap @forward-out``. The maps send a packet to
  the chain of the netcore network it enters or leaves; a packet that
  touches no netcore bridge is not looked at (Docker 29's ``docker-bridges``
  table dispatches the same way). An internal network's ``out`` chain comes
  first (``forward-internal``), so no other network's ``in`` chain accepts
  what leaves it (its ``ct status dnat`` rule would: a published port is a
  host address too). Every per-network ``in`` chain ends in a verdict, so a
  packet between two netcore bridges is decided by the chain of the network
  it enters, and the other ``out`` chains only see traffic to non-netcore
  interfaces.
- ``postrouting``: ``type nat hook postrouting priority srcnat`` (100), policy
  accept: ``oifname != "BRIDGE" ip saddr SUBNET masquerade`` per non-internal
  network with masquerading on (``ip6 saddr SUBNET6`` as well with IPv6), as
  Docker does; option ``com.docker.network.bridge.enable_ip_masquerade=false``
  leaves it out.
- Per network, named after the first 12 hex digits of its ID (the short ID,
  stable for the network's life) with its name and bridge in a comment:
  ``in-ID`` (packets routed onto its bridge) and ``out-ID`` (packets routed
  off it):

  - ``in``, non-internal: ``ct state established,related accept`` (replies to
    what its containers opened); with published ports, ``ct status dnat
    accept`` (a connection to one of them through a host address, whoever
    opens it); from its own bridge (a container routing via the gateway to a
    neighbour) accept, or drop when ICC is off; anything else drop. So another
    netcore network, the default bridge included, never opens a connection
    into it, and neither does the outside, except through a published port:
    Docker's default (``nat`` gateway mode) drops direct access to
    containers too.
  - ``out``, non-internal: ``ct state invalid drop`` (an invalid packet is not
    NATed and would leave with its private source, which netavark's forward
    chain drops as well), then accept: containers reach every non-netcore
    interface.
  - internal (``--internal``): ``in`` accepts only its own bridge (or drops
    that too with ICC off) and drops the rest; ``out`` returns what stays on
    its bridge (its ``in`` chain decides) and drops everything else. Nothing
    crosses the subnet boundary in either direction, replies included, as
    Docker's ``INTERNAL NETWORK INGRESS/EGRESS`` rules do.

- A macvlan or ipvlan network (``routed`` false) gets only dnsd's rules on
  its shim (``input``, ``dns-untracked-*``): its containers' traffic goes
  straight onto the parent's LAN and never crosses the gateway namespace's
  forward path, so it has no map entry, no ``in``/``out`` chain and no
  masquerading (what protects it is the LAN's business, as with Docker's
  macvlan driver, which installs no rule for it either).

- Published ports (``run -p``): maps from host port (and address) to
  container address and port, ``published-prerouting``/``published-output``
  (nat) that DNAT through them, ``published-guard`` (raw), and per network a
  hairpin/loopback masquerade and a ``route_localnet`` guard: see
  ``_PortRules``. None of it is rendered while nothing is published.

Every base chain has policy accept and every rule matches a netcore bridge, a
published port or dnsd's port on dnsd's own addresses, so traffic netcore does
not own is never touched. There is no ``bridge``
family table: ICC off stays the bridge port isolation netcore sets on each
container's veth (``isolated on``): the kernel's bridge forwards nothing
between two isolated ports, without br_netfilter (Docker needs
``bridge-nf-call-iptables``, a host-wide switch that sends every bridged frame
of every bridge through IP filtering) and without a hook on every bridged
frame; and it survives an ``nft flush ruleset``, which an isolation rule
would not. What port isolation leaves open, a container routing to a
neighbour through the gateway, the ``in`` chain closes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import NamedTuple

from netcore.firewall import SHORT_ID, FirewallState, NetworkRules
from netcore.kernel.names import IFNAMSIZ
from netcore.model import DNS_PORT, NAME_MAX, NAME_RE
from netcore.ports import Mapping

TABLE_FAMILY = "inet"
TABLE_NAME = "netcore"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"

PRIORITY_RAW = "raw"  # -300: before connection tracking (-200)
PRIORITY_INPUT = "filter - 10"  # -10: before the conventional filter chains (0)
PRIORITY_FORWARD = "filter"  # 0
PRIORITY_POSTROUTING = "srcnat"  # 100
PRIORITY_DSTNAT = "dstnat"  # -100, as nft names it for prerouting
PRIORITY_OUTPUT_NAT = "-100"  # the same, written as a number: nft has no name for it on the output hook
LOOPBACK4 = "127.0.0.0/8"


_ID_RE = re.compile(r"^[0-9a-f]{12,64}$")


@dataclass(frozen=True)
class Ruleset:
    """A rendering: ``script`` is the whole ``nft -f -`` input (replace the table, or only delete it);
    ``table`` the ``table inet netcore { ... }`` block alone, as ``nft list table inet netcore`` lists it
    ('' when the state is empty); ``digest`` the first 16 hex digits of the table's SHA-256, also in the
    table's comment so ``nft list`` shows which rendering is live ('' when empty)."""

    script: str
    table: str
    digest: str

    @property
    def empty(self) -> bool:
        return not self.table


def _check(network: NetworkRules) -> None:
    if not _ID_RE.match(network.id):
        raise ValueError(f"network id {network.id!r}: expected at least {SHORT_ID} lowercase hex digits")
    if len(network.name) > NAME_MAX or not NAME_RE.match(network.name):  # nothing nft would read as syntax
        raise ValueError(f"network name {network.name!r} is not a valid network name")
    for what, device in (("bridge", network.bridge), ("parent", network.parent)):
        if device is not None and (len(device) > IFNAMSIZ or not NAME_RE.match(device)):
            raise ValueError(f"{what} {device!r} of network {network.name} is not an interface name")
    if network.subnet is None and network.subnet6 is None:
        raise ValueError(f"network {network.name} has no subnet")


class Cidr(NamedTuple):
    """A parsed subnet (``network``) and its text as nft lists it (``text``, e.g. ``10.89.0.0/24``)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    text: str


def _parse_net(cidr: str, version: int, what: str) -> Cidr:
    network = ipaddress.ip_network(cidr, strict=False)
    if network.version != version:
        raise ValueError(f"{what} {cidr!r} is not an IPv{version} subnet")
    return Cidr(network, network.with_prefixlen)


def _subnets(network: NetworkRules) -> dict[int, Cidr | None]:
    """The network's subnets by IP version, parsed once (ValueError for a malformed one)."""
    return {4: _parse_net(network.subnet, 4, f"subnet of {network.name}") if network.subnet else None,
            6: _parse_net(network.subnet6, 6, f"IPv6 subnet of {network.name}") if network.subnet6 else None}


def _disjoint(subnets: list[Cidr]) -> list[Cidr]:
    """``subnets`` sorted, each one inside another left out: what an interval set takes (nft refuses
    overlapping elements; two networks never share addresses, but a firewall must not fail on a store that
    says otherwise). Adjacent ones stay apart, as nft lists them."""
    kept: list[Cidr] = []
    end = -1
    for start, prefix, cidr in sorted((int(c.network.network_address), c.network.prefixlen, c) for c in subnets):
        if start > end:
            kept.append(cidr)
            end = start + (1 << (cidr.network.max_prefixlen - prefix)) - 1
    return kept


def _addr(address: str, version: int, what: str) -> str:
    parsed = ipaddress.ip_address(address)
    if parsed.version != version:
        raise ValueError(f"{what} {address!r} is not an IPv{version} address")
    return parsed.compressed


def _comment(network: NetworkRules) -> str:
    return f"network {network.name} on {network.bridge}"


def _vmap(name: str, entries: list[tuple[str, str]]) -> list[str]:
    lines = [f"\tmap {name} {{", "\t\ttype ifname : verdict"]
    if entries:
        lines.append("\t\telements = { " + ", ".join(f'"{key}" : jump {chain}' for key, chain in entries) + " }")
    return [*lines, "\t}"]


def _chain(name: str, rules: list[str], hook: str | None = None, comment: str | None = None) -> list[str]:
    lines = [f"\tchain {name} {{"]
    if comment:
        lines.append(f'\t\tcomment "{comment}"')
    if hook:
        lines.append(f"\t\t{hook}")
    return lines + [f"\t\t{rule}" for rule in rules] + ["\t}"]


def _in_rules(network: NetworkRules, published: bool = False) -> list[str]:
    bridge = f'"{network.bridge}"'
    rules = [] if network.internal else ["ct state established,related accept"]
    if published:
        rules.append('ct status dnat accept comment "to its published ports, through a host address"')
    if network.icc:
        rules.append(f'iifname {bridge} accept comment "between its containers, routed"')
    else:
        rules.append(f'iifname {bridge} counter drop comment "icc off: no routing between its containers"')
    if network.internal:
        rules.append('counter drop comment "internal: nothing comes in"')
    else:
        rules.append('counter drop comment "no new connection from another network or the outside"')
    return rules


def _out_rules(network: NetworkRules) -> list[str]:
    if network.internal:  # reached first, through forward-internal: before any other network's in chain
        return [f'oifname "{network.bridge}" return comment "between its containers: its in chain decides"',
                'counter drop comment "internal: nothing goes out"']
    return ["ct state invalid counter drop", 'accept comment "out to non-netcore interfaces"']


def _has_device(network: NetworkRules) -> bool:
    """Whether the network has a link in the gateway namespace: a bridge, or a macvlan/ipvlan shim (the
    networks dnsd serves there); macvlan private and passthru networks have none."""
    return network.routed or network.dns


def _internal_input_rules(network: NetworkRules) -> list[str]:
    """What an internal network may send to the gateway namespace itself besides DNS to its own gateway
    (accepted before these): replies to what the gateway namespace opened (it still reaches the containers,
    as on Docker, moby/moby#47356) and IPv6 neighbour discovery (without it no container finds the
    gateway's address, DNS included); nothing else (issue 23 item 2, moby/libnetwork#1151 and #2261)."""
    bridge = f'"{network.bridge}"'
    rules = [f'iifname {bridge} ct state established,related accept comment "internal {network.name}: replies"']
    if network.subnet6:
        rules.append(f"iifname {bridge} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept "
                     f'comment "internal {network.name}: neighbour discovery"')
    rules.append(f'iifname {bridge} counter drop comment "internal {network.name}: nothing but DNS reaches the '
                 'gateway namespace"')
    return rules


def _set(name: str, kind: str, elements: list[str], interval: bool = False) -> list[str]:
    lines = [f"\tset {name} {{", f"\t\ttype {kind}"] + (["\t\tflags interval"] if interval else [])
    return [*lines, "\t\telements = { " + ", ".join(elements) + " }", "\t}"]


def _dnsd_input_rules(networks: list[NetworkRules], parsed: dict[str, dict[int, Cidr | None]],
                      dnsd_sets: tuple[tuple[str, str], ...], dns_port: int, rules: list[str]) -> dict[int, list[str]]:
    """Append to ``rules`` what decides who reaches dnsd's port (issue 24 item 1), and return the subnets of
    every network with a link in the gateway namespace, per IP version, as the ``subnets4``/``6`` sets hold
    them (empty lists for a version without dnsd addresses); ``parsed``: each network's ``_subnets``.

    - the gateway namespace itself (``lo``) reaches every dnsd address;
    - a network's own subnet, arriving on its own link (its bridge, its shim, a LAN network's parent: what a
      vepa switch sends back to the shim's address arrives there, as the kernel answers ARP for it on any
      link), reaches every dnsd address, and dnsd answers it as its container or as that network's source,
      or REFUSES it (dnsd.core.snapshot); an internal network's reaches its own gateway only (issue 23 item 2);
    - any other source inside a netcore subnet is dropped: it arrived on a link that is not its network's
      (spoofed on the uplink, a container posing as another network's, an internal network's way out),
      which dnsd, answering by source address, could not tell;
    - what is left, sources outside every netcore subnet, reaches dnsd, which REFUSES them, as it always did.
    """
    family_of = {int(name[-1]): family for family, name in dnsd_sets}
    found: dict[int, list[Cidr]] = {4: [], 6: []}
    own_link = []
    for network in networks:
        if not _has_device(network):
            continue
        for version, gateway in ((4, network.gateway), (6, network.gateway6)):
            subnet, family = parsed[network.id][version], family_of.get(version)
            if subnet is None or family is None:
                continue
            found[version].append(subnet)
            if network.internal and not (network.dns and gateway):
                continue  # nothing of it reaches dnsd: its input rules drop it
            target = _addr(gateway, version, f"gateway of {network.name}") if network.internal else f"@dnsd{version}"
            for device in filter(None, (network.bridge, network.parent)):
                own_link.append(f'iifname "{device}" {family} saddr {subnet.text} {family} daddr {target} '
                                f'meta l4proto {{ tcp, udp }} th dport {dns_port} accept comment "dnsd: '
                                f'{network.name}, on its own link"')
    drops, subnets = [], {4: [], 6: []}
    for version, family in sorted(family_of.items()):
        rules.append(f'iifname "lo" {family} daddr @dnsd{version} meta l4proto {{ tcp, udp }} th dport {dns_port} '
                     'accept comment "dnsd: the gateway namespace itself"')
        subnets[version] = [subnet.text for subnet in _disjoint(found[version])]
        if subnets[version]:
            drops.append(f"{family} saddr @subnets{version} {family} daddr @dnsd{version} meta l4proto {{ tcp, udp }} "
                         f'th dport {dns_port} counter drop comment "dnsd: a netcore subnet\'s source on another '
                         'link"')
    rules += own_link + drops
    return subnets


def _map(name: str, key: str, value: str, entries: list[tuple[str, str]]) -> list[str]:
    lines = [f"\tmap {name} {{", f"\t\ttype {key} : {value}"]
    if entries:
        lines.append("\t\telements = { " + ", ".join(f"{k} : {v}" for k, v in entries) + " }")
    return [*lines, "\t}"]


class _PortRules:
    """The published ports' part of the table (README "Published ports"), rendered only when there are any:

    - maps from (host address,) protocol . host port to container address . port: ``published4``/``6``
      (every address of the host), ``published4-addr``/``6-addr`` (one host address), ``published4-lo``
      (a loopback address: the host alone reaches it);
    - ``published-prerouting`` (nat, dstnat): packets from elsewhere to a local address are DNATed, but
      never to 127.0.0.0/8 or ::1, so a neighbour routing 127.0.0.1 to the host reaches nothing
      (moby/moby#45610); ``published-output`` (nat, -100): the host's own packets, loopback included;
    - ``published-guard`` (raw prerouting) drops what arrives from outside for 127.0.0.0/8 on a published
      port before anything else sees it, as Docker 28's raw-table rules do;
    - per network with published ports: ``ct status dnat accept`` in its ``in`` chain (through a host
      address, other networks and the outside reach the published ports, containers/netavark#709), a
      masquerade of DNATed packets from its own subnet (hairpin, a container through its own port) and
      from 127.0.0.0/8 in ``postrouting``, and where the host reaches it through 127.0.0.1 (the bridge has
      ``route_localnet``) an ``input`` rule that drops new packets from the bridge to 127.0.0.0/8, so
      containers never reach the host's loopback services through that setting (CVE-2020-8558's lesson);
    - when a port is published on dnsd's port (``-p 53:53/udp`` for a Pi-hole, issue 23 item 3), a first
      rule in both DNAT chains that leaves dnsd's own addresses (the ``dnsd4``/``dnsd6`` sets) alone: they
      answer as dnsd, and every other host address forwards to the published container.
    """

    def __init__(self, mappings: tuple[Mapping, ...], networks: dict[str, NetworkRules], dns_port: int = DNS_PORT,
                 dnsd_sets: tuple[tuple[str, str], ...] = ()):
        """``dnsd_sets``: (family, set name) of the sets of dnsd's addresses the table declares."""
        self.maps: dict[str, list[tuple[str, str]]] = {name: [] for name in
                                                       ("published4", "published4-addr", "published4-lo",
                                                        "published6", "published6-addr")}
        guard: set[tuple[str, int]] = set()
        self.networks: set[str] = set()
        localnet: set[str] = set()
        seen: dict[tuple[str, str], str] = {}
        for mapping in mappings:
            network = networks.get(mapping.network_id)
            if network is None:
                raise ValueError(f"published port {mapping.host_port} of {mapping.container} maps to a network "
                                 "the state does not hold")
            version = mapping.family
            address = _addr(mapping.address, version, f"address of {mapping.container}")
            for port in (mapping.host_port, mapping.container_port):
                if not 0 < port < 65536:
                    raise ValueError(f"port {port} of {mapping.container} out of range")
            if mapping.protocol not in ("tcp", "udp", "sctp"):
                raise ValueError(f"protocol {mapping.protocol!r} of {mapping.container} is not tcp, udp or sctp")
            key = f"{mapping.protocol} . {mapping.host_port}"
            if mapping.host_ip:
                key = f"{_addr(mapping.host_ip, version, f'host address of {mapping.container}')} . {key}"
                name = f"published{version}-" + ("lo" if mapping.loopback else "addr")
            else:
                name = f"published{version}"
            if (name, key) in seen:
                raise ValueError(f"{mapping.container} and {seen[name, key]} publish the same port ({key})")
            seen[name, key] = mapping.container
            self.maps[name].append((key, f"{address} . {mapping.container_port}"))
            self.networks.add(network.id)
            if mapping.reaches_loopback:
                guard.add((mapping.protocol, mapping.host_port))
                localnet.add(network.id)
        self.guard = sorted(guard)
        on_dns_port = any(m.host_port == dns_port and m.protocol in ("tcp", "udp") for m in mappings)
        self.dnsd_first = [f"{family} daddr @{name} meta l4proto {{ tcp, udp }} th dport {dns_port} return "
                           f'comment "dnsd\'s own addresses stay dnsd\'s"' for family, name in dnsd_sets] \
            if on_dns_port else []
        self.localnet_bridges = sorted(networks[n].bridge for n in localnet)
        self.postrouting, self.input = [], []
        for network in sorted((networks[n] for n in self.networks), key=lambda n: n.id):
            bridge = f'"{network.bridge}"'
            sources = sorted(filter(None, [network.subnet, LOOPBACK4 if network.id in localnet else None]),
                             key=lambda cidr: ipaddress.ip_network(cidr))
            if sources:
                self.postrouting.append(f"oifname {bridge} ct status dnat ip saddr {{ {', '.join(sources)} }} "
                                        f'masquerade comment "published ports of {network.name}: hairpin, loopback"')
            if network.subnet6:
                self.postrouting.append(f"oifname {bridge} ct status dnat ip6 saddr {network.subnet6} masquerade "
                                        f'comment "published ports of {network.name}: hairpin"')
            if network.id in localnet:
                self.input.append(f"iifname {bridge} ip daddr {LOOPBACK4} ct state != {{ established, related }} "
                                  f'counter drop comment "route_localnet on {network.bridge}: not to the host\'s '
                                  'loopback"')

    def declarations(self) -> list[str]:
        """The maps and the guard set (nft lists every set and map of a table before its chains, so they
        are rendered there too, and a listing compares equal); nothing when no port is published."""
        key4, key6 = "ipv4_addr", "ipv6_addr"
        kinds = {"published4": ("inet_proto . inet_service", f"{key4} . inet_service"),
                 "published4-addr": (f"{key4} . inet_proto . inet_service", f"{key4} . inet_service"),
                 "published4-lo": (f"{key4} . inet_proto . inet_service", f"{key4} . inet_service"),
                 "published6": ("inet_proto . inet_service", f"{key6} . inet_service"),
                 "published6-addr": (f"{key6} . inet_proto . inet_service", f"{key6} . inet_service")}
        body: list[str] = []
        for name, entries in self.maps.items():
            if entries:
                body += ["", *_map(name, *kinds[name], sorted(entries))]
        if self.guard:
            body += ["", "\tset published-guard {", "\t\ttype inet_proto . inet_service",
                     "\t\telements = { " + ", ".join(f"{p} . {n}" for p, n in self.guard) + " }", "\t}"]
        return body

    def chains(self) -> list[str]:
        """The guard chain and the two DNAT chains; nothing when no port is published."""
        if not any(self.maps.values()):
            return []
        body: list[str] = []
        lookup = {"published4": "dnat ip to meta l4proto . th dport map @published4",
                  "published4-addr": "dnat ip to ip daddr . meta l4proto . th dport map @published4-addr",
                  "published4-lo": "dnat ip to ip daddr . meta l4proto . th dport map @published4-lo",
                  "published6": "dnat ip6 to meta l4proto . th dport map @published6",
                  "published6-addr": "dnat ip6 to ip6 daddr . meta l4proto . th dport map @published6-addr"}
        local = {"published4": "fib daddr type local ", "published6": "ip6 daddr != ::1 fib daddr type local "}
        prerouting, output = [], []
        for name in lookup:
            if not self.maps[name]:
                continue
            output.append(local.get(name, "") + lookup[name])
            if name == "published4":
                prerouting.append(f"ip daddr != {LOOPBACK4} {local[name]}{lookup[name]}")
            elif name != "published4-lo":
                prerouting.append(local.get(name, "") + lookup[name])
        if self.guard:
            body += ["", *_chain("published-guard",
                                 [f'iifname != "lo" ip daddr {LOOPBACK4} meta l4proto . th dport @published-guard '
                                  'counter drop comment "published on the host\'s loopback: not from outside"'],
                                 hook=f"type filter hook prerouting priority {PRIORITY_RAW}; policy accept;")]
        body += ["", *_chain("published-prerouting", self.dnsd_first + prerouting,
                             hook=f"type nat hook prerouting priority {PRIORITY_DSTNAT}; policy accept;")]
        body += ["", *_chain("published-output", self.dnsd_first + output,
                             hook=f"type nat hook output priority {PRIORITY_OUTPUT_NAT}; policy accept;")]
        return body


def render(state: FirewallState) -> Ruleset:
    """The whole ruleset for ``state``: deterministic (networks sorted by ID, the maps by bridge), so
    two renderings diff line by line. Raises ValueError for a malformed network, two networks with
    the same short ID or bridge, or a port out of range."""
    if not 0 < state.dns_port < 65536:
        raise ValueError(f"dns port {state.dns_port} out of range")
    networks = sorted(state.networks, key=lambda network: network.id)
    seen_ids: dict[str, str] = {}
    seen_bridges: dict[str, str] = {}
    for network in networks:
        _check(network)
        for seen, key in ((seen_ids, network.short_id), (seen_bridges, network.bridge)):
            if key in seen:
                raise ValueError(f"networks {seen[key]} and {network.name} share {key}")
            seen[key] = network.name
    reset = f"table {TABLE} {{}}\ndelete table {TABLE}\n"
    header = "#!/usr/sbin/nft -f\n# netcore's whole ruleset, replaced in one transaction (netcore.nftables)\n"
    if not networks:
        return Ruleset(script=header + reset, table="", digest="")

    input_rules, postrouting_rules, untracked_in, untracked_out = [], [], [], []
    dnsd_addresses: dict[int, list[tuple[int, str]]] = {4: [], 6: []}
    parsed = {network.id: _subnets(network) for network in networks}
    for network in networks:
        bridge = f'"{network.bridge}"'
        v4, v6 = (parsed[network.id][version] and parsed[network.id][version].text for version in (4, 6))
        if network.dns:
            for family, gateway, version in (("ip", network.gateway, 4), ("ip6", network.gateway6, 6)):
                if gateway:
                    parsed_address = ipaddress.ip_address(gateway)
                    if parsed_address.version != version:
                        raise ValueError(f"gateway of {network.name} {gateway!r} is not an IPv{version} address")
                    address = parsed_address.compressed
                    dnsd_addresses[version].append((int(parsed_address), address))
                    untracked_in.append(f"iifname {bridge} {family} daddr {address} udp dport {state.dns_port} "
                                        f'notrack comment "dnsd of {network.name}"')
                    untracked_out.append(f"oifname {bridge} {family} saddr {address} udp sport {state.dns_port} "
                                         f'notrack comment "dnsd of {network.name}"')
        if network.masquerade and not network.internal and network.routed:
            for family, subnet in (("ip", v4), ("ip6", v6)):
                if subnet:
                    postrouting_rules.append(f"oifname != {bridge} {family} saddr {subnet} masquerade "
                                             f'comment "{network.name}"')
    dnsd_sets = tuple((family, f"dnsd{version}") for family, version in (("ip", 4), ("ip6", 6))
                      if dnsd_addresses[version])
    subnets = _dnsd_input_rules(networks, parsed, dnsd_sets, state.dns_port, input_rules)
    for network in networks:
        if network.internal and _has_device(network):
            input_rules += _internal_input_rules(network)

    ports = _PortRules(state.ports, {n.id: n for n in networks}, state.dns_port, dnsd_sets)
    postrouting_rules += ports.postrouting
    input_rules += ports.input

    routed = [n for n in networks if n.routed]
    by_bridge = sorted(routed, key=lambda network: network.bridge)
    body = _vmap("forward-internal", [(n.bridge, f"out-{n.short_id}") for n in by_bridge if n.internal])
    body += ["", *_vmap("forward-in", [(n.bridge, f"in-{n.short_id}") for n in by_bridge])]
    body += ["", *_vmap("forward-out", [(n.bridge, f"out-{n.short_id}") for n in by_bridge if not n.internal])]
    for version in (4, 6):
        if dnsd_addresses[version]:
            body += ["", *_set(f"dnsd{version}", f"ipv{version}_addr",
                               [address for _, address in sorted(dnsd_addresses[version])])]
            if subnets[version]:
                body += ["", *_set(f"subnets{version}", f"ipv{version}_addr", subnets[version], interval=True)]
    body += ports.declarations()
    body += ["", *_chain("dns-untracked-in", untracked_in,
                         hook=f"type filter hook prerouting priority {PRIORITY_RAW}; policy accept;")]
    body += ["", *_chain("dns-untracked-out", untracked_out,
                         hook=f"type filter hook output priority {PRIORITY_RAW}; policy accept;")]
    body += ["", *_chain("input", input_rules,
                         hook=f"type filter hook input priority {PRIORITY_INPUT}; policy accept;")]
    body += ["", *_chain("forward", ["iifname vmap @forward-internal", "oifname vmap @forward-in",
                                     "iifname vmap @forward-out"],
                         hook=f"type filter hook forward priority {PRIORITY_FORWARD}; policy accept;")]
    body += ["", *_chain("postrouting", postrouting_rules,
                         hook=f"type nat hook postrouting priority {PRIORITY_POSTROUTING}; policy accept;")]
    body += ports.chains()
    for network in routed:
        body += ["", *_chain(f"in-{network.short_id}", _in_rules(network, network.id in ports.networks),
                             comment=_comment(network))]
        body += ["", *_chain(f"out-{network.short_id}", _out_rules(network), comment=_comment(network))]
    digest = hashlib.sha256("\n".join(body).encode()).hexdigest()[:16]
    table = "\n".join([f"table {TABLE} {{", f'\tcomment "netcore ruleset {digest}"', *body, "}"]) + "\n"
    return Ruleset(script=header + reset + table, table=table, digest=digest)


_COUNTER_RE = re.compile(r"counter packets \d+ bytes \d+")
_ELEMENTS_RE = re.compile(r"elements = \{([^{}]*)\}")


def normalize_listing(text: str) -> str:
    """A table's text reduced to what identifies its rules: counters' values dropped, whitespace
    (indentation, blank lines, nft's wrapping of long element lists) collapsed to single spaces, and
    the elements of each map sorted (nft lists them in the kernel's hash order, not as written).
    Equal for a rendered ``Ruleset.table`` and ``nft list table inet netcore`` of the same table."""
    flat = " ".join(_COUNTER_RE.sub("counter", text).split())

    def _sorted(match: re.Match) -> str:
        return "elements = { " + ", ".join(sorted(e.strip() for e in match.group(1).split(","))) + " }"

    return _ELEMENTS_RE.sub(_sorted, flat)
