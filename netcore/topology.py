"""YAML topologies: `netcore up -f FILE` creates what a file declares, `down` removes it.

    networks:
      app: {subnet: 172.30.0.0/24, ip_range: 172.30.0.128/25, gateway: 172.30.0.254}
    containers:
      web:
        networks:
          app: {aliases: [www], ip: 172.30.0.130}
        ports: ["8080:80", "127.0.0.1::53/udp"]   # as `run -p`
      db:
        networks: [app, bridge]

`up` is idempotent: what exists already is left as it is, missing networks and
connections are added. Parsing and checking are pure; only up/down call the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from netcore.errors import Conflict, NetcoreError
from netcore.ports import PORT_MAX, PublishError, PublishSpec, parse_publish
from netcore.requests import Attachment as RequestAttachment, ConnectSpec, ContainerSpec as RequestSpec, NetworkSpec


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader without YAML 1.1's base-60 integers, which read an unquoted port mapping
    ``22:22`` as the number 1342 (a valid port: it would be published silently wrong). As in YAML 1.2,
    ``22:22`` is then a string; decimal, octal and hex integers are read as before."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if not (tag == "tag:yaml.org,2002:int" and regexp.match("22:22"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(
    r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"))

NETWORK_KEYS = {"driver", "subnet", "ip_range", "gateway", "internal", "ipv6", "subnet6", "dns", "options", "labels"}
CONTAINER_KEYS = {"networks", "net", "hostname", "dns", "ports"}
ATTACHMENT_KEYS = {"aliases", "ip"}


@dataclass
class Attachment:
    network: str
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None


@dataclass
class ContainerSpec:
    name: str
    attachments: list[Attachment]
    mode: str | None = None  # host, none or container:NAME instead of networks
    hostname: str | None = None
    dns: list[str] = field(default_factory=list)
    ports: list[PublishSpec] = field(default_factory=list)


@dataclass
class Topology:
    networks: dict[str, dict]
    containers: list[ContainerSpec]


def _mapping(value, where: str, allowed: set[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NetcoreError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(map(str, value)) - allowed)
    if unknown:
        raise NetcoreError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return value


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise NetcoreError(f"{where}: expected a list of strings")
    return [str(v) for v in value]


def _ports(value, where: str) -> list[PublishSpec]:
    """A container's ``ports:``: a list of ``run -p`` values; NetcoreError naming the entry if one is not."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise NetcoreError(f"{where}: expected a list of port mappings such as \"8080:80\"")
    specs = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise NetcoreError(f"{where}: {item!r} is not a port mapping")
        if isinstance(item, int) and not 0 < item <= PORT_MAX:
            raise NetcoreError(f"{where}: {item} is not a port")
        try:
            specs.append(parse_publish(str(item)))
        except PublishError as err:
            raise NetcoreError(f"{where}: {err}") from None
    return specs


def parse(document, source: str) -> Topology:
    top = _mapping(document, source, {"networks", "containers"})
    networks = {}
    declared = top.get("networks")
    for name, spec in _mapping(declared, f"{source}: networks", set(map(str, declared or {}))).items():
        spec = _mapping(spec, f"{source}: networks.{name}", NETWORK_KEYS)
        networks[str(name)] = spec
    containers = []
    raw_containers = top.get("containers") or {}
    for name, spec in _mapping(raw_containers, f"{source}: containers", set(map(str, raw_containers))).items():
        where = f"{source}: containers.{name}"
        spec = _mapping(spec, where, CONTAINER_KEYS)
        raw_nets = spec.get("networks")
        if isinstance(raw_nets, list):
            raw_nets = {str(n): None for n in raw_nets}
        attachments = []
        for net, att in _mapping(raw_nets, f"{where}.networks", set(map(str, raw_nets or {}))).items():
            att = _mapping(att, f"{where}.networks.{net}", ATTACHMENT_KEYS)
            attachments.append(Attachment(str(net), _strings(att.get("aliases"), f"{where}.networks.{net}.aliases"),
                                          str(att["ip"]) if att.get("ip") else None))
        if spec.get("net") and attachments:
            raise NetcoreError(f"{where}: give either 'net' (host, none, container:NAME) or 'networks', not both")
        containers.append(ContainerSpec(str(name), attachments, spec.get("net"), spec.get("hostname"),
                                        _strings(spec.get("dns"), f"{where}.dns"),
                                        _ports(spec.get("ports"), f"{where}.ports")))
    return Topology(networks, containers)


def load(path: str) -> Topology:
    try:
        with open(path) as f:
            document = yaml.load(f, Loader=Loader)  # a SafeLoader (Loader above)
    except OSError as err:
        raise NetcoreError(f"cannot read topology {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise NetcoreError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from None
    return parse(document, path)


def creation_order(containers: list[ContainerSpec]) -> list[ContainerSpec]:
    """The containers in file order, except that one run with ``net: container:NAME`` comes after
    NAME when the file declares NAME too (its namespace must exist first). Pure; a cycle keeps file order
    for its members (creating them then fails with a clear "no such container")."""
    declared = {spec.name: spec for spec in containers}
    ordered: list[ContainerSpec] = []
    placed: set[str] = set()

    def place(spec: ContainerSpec, visiting: frozenset[str]) -> None:
        if spec.name in placed or spec.name in visiting:
            return
        owner = spec.mode.partition(":")[2] if spec.mode and spec.mode.startswith("container:") else None
        if owner in declared:
            place(declared[owner], visiting | {spec.name})
        if spec.name not in placed:
            placed.add(spec.name)
            ordered.append(spec)

    for spec in containers:
        place(spec, frozenset())
    return ordered


def network_spec(name: str, spec: dict) -> NetworkSpec:
    """The request of a topology's network ``name`` (its keys: ``NETWORK_KEYS``, as ``network create`` takes
    them: ``driver``, ``subnet``, ``subnet6``, ``ip_range``, ``gateway``, ``internal``, ``ipv6``, ``dns``,
    ``options``, ``labels``)."""
    gateway = spec.get("gateway")
    return NetworkSpec(name, str(spec.get("driver") or "bridge"),
                       tuple(str(s) for s in (spec.get("subnet"), spec.get("subnet6")) if s),
                       str(spec["ip_range"]) if spec.get("ip_range") else None, (str(gateway),) if gateway else (),
                       bool(spec.get("internal")), bool(spec.get("ipv6") or spec.get("subnet6")),
                       tuple(_strings(spec.get("dns"), name)),
                       {str(k): str(v) for k, v in (spec.get("options") or {}).items()},
                       {str(k): str(v) for k, v in (spec.get("labels") or {}).items()})


def up(engine, topology: Topology) -> list[str]:
    with engine.action():  # one lock, one reconciliation, one dnsd sync for the whole file
        return _up(engine, topology)


def _up(engine, topology: Topology) -> list[str]:
    done = []
    store = engine.store
    for name, spec in topology.networks.items():
        if store.find_network(name):
            done.append(f"network {name}: exists")
            continue
        engine.create_network(network_spec(name, spec))
        done.append(f"network {name}: created")
    for spec in creation_order(topology.containers):
        container = store.find_container(spec.name)
        pending = list(spec.attachments)
        if container is None:
            first = pending.pop(0) if pending else None
            engine.run(RequestSpec.from_flags(spec.name, spec.mode or (first.network if first else None),
                                                first.aliases if first else [], first.ip if first else None,
                                                spec.hostname, spec.dns, spec.ports))
            done.append(f"container {spec.name}: created")
            container = store.container(spec.name)
        else:
            done.append(f"container {spec.name}: exists")
        connected = {e.network_id for e in store.endpoints_of_container(container.id)}
        for attachment in pending:
            if store.network(attachment.network).id not in connected:
                engine.connect(ConnectSpec(spec.name, RequestAttachment(attachment.network, tuple(attachment.aliases),
                                                                 attachment.ip)))
                done.append(f"container {spec.name}: connected to {attachment.network}")
    return done


def down(engine, topology: Topology) -> list[str]:
    """Remove what the topology declares and exists; return one line per removal, in the order done.

    Containers go first, in any order the file lists them: one sharing another's
    namespace (``net: container:NAME``) before its owner. A container the file
    does not declare but that shares the namespace of one it does is never
    removed with it: down refuses (Conflict) and changes nothing.
    """
    with engine.action():
        return _down(engine, topology)


def _down(engine, topology: Topology) -> list[str]:
    done = []
    store = engine.store
    declared = {c.name for c in topology.containers}
    present = [store.find_container(c.name) for c in topology.containers]
    present = [c for c in present if c is not None]
    for container in present:
        undeclared = sorted(d.name for d in engine.sharing(container) if d.name not in declared)
        if undeclared:
            raise Conflict(f"container {container.name} shares its namespace with {', '.join(undeclared)}, "
                           "which the topology does not declare: remove it first (netcore rm NAME), "
                           "or declare it; nothing was removed")
    if present:
        removed = engine.remove_containers([c.id for c in present])
        done += [f"container {c.name}: removed" for c in removed]
    for name in topology.networks:
        if engine.store.find_network(name):
            engine.remove_network(name)
            done.append(f"network {name}: removed")
    return done
