"""The plan of ``compose up`` and ``compose down``: what to create, recreate, keep and remove; pure.

The input is the ``Project`` (``netcore.compose.model``) and what exists (``Existing``: each network and
container with its labels). Ownership is Compose's: an object is the project's when its
``com.docker.compose.project`` label names the project (and, for a container, ``com.docker.compose.oneoff``
is not ``True``). ``up`` and ``down`` touch only such objects:

- ``plan_up`` refuses, in one line and before anything is made, every name the project needs that
  something outside it holds (a container or network made by hand or by another project), an external
  network that does not exist, and a ``network_mode: container:NAME`` whose container does not exist.
- A network is kept when its ``com.docker.compose.config-hash`` label equals the file's hash, else
  recreated; the containers on a recreated network are recreated with it.
- A container is kept when its hash equals its service's and nothing it stands on is made anew (its
  networks, the container whose namespace it shares), else recreated. A service keeps its lowest-numbered
  containers up to its replica count, removes the rest (highest first), and numbers new ones after the
  highest it has (Compose's ``nextContainerNumber``).
- The project's containers of services no longer in the file are orphans: removed with
  ``remove_orphans``, else named in a warning (Compose's wording).

A plan runs in two phases: ``teardown`` (containers, dependents before what they share, then networks)
and ``build`` (networks, then containers in start order, each after what it depends on). Recreating an
object is its removal in the first phase and its creation in the second, so a network is never recreated
under a container. A plan that fails part way leaves objects that a new plan from what then exists
completes (``up``) or removes (``down``).

``NetworkSpec`` and ``ContainerSpec`` are what the engine is asked to build, labels included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from netcore import requests
from netcore.compose.errors import ComposeError
from netcore.compose.model import ComposeNetwork, Project, Service
from netcore.ports import PublishSpec

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
HASH_LABEL = "com.docker.compose.config-hash"
NETWORK_LABEL = "com.docker.compose.network"
ONEOFF_LABEL = "com.docker.compose.oneoff"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"

NETWORK = "network"
CONTAINER = "container"
CREATE, RECREATE, KEEP, REMOVE = "create", "recreate", "keep", "remove"
DONE = {CREATE: "Created", RECREATE: "Recreated", KEEP: "Running", REMOVE: "Removed"}  # Compose's words


@dataclass(frozen=True)
class Existing:
    """A network or container that exists: ``kind`` (``network`` or ``container``), ``name``, its
    ``labels``, and for a container the names of the networks it is on (``networks``)."""

    kind: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    networks: tuple[str, ...] = ()

    def owned_by(self, project: str) -> bool:
        """Whether ``project`` made this (its project label, and not a one-off container)."""
        return self.labels.get(PROJECT_LABEL) == project and self.labels.get(ONEOFF_LABEL, "False") != "True"

    @property
    def number(self) -> int:
        try:
            return int(self.labels.get(NUMBER_LABEL, "0"))
        except ValueError:
            return 0

    def owner(self) -> str:
        """Who made it, for messages: ``project NAME``, or ``not compose``."""
        project = self.labels.get(PROJECT_LABEL)
        return f"project {project}" if project else "not compose"


@dataclass(frozen=True)
class NetworkSpec:
    """A network to create, as ``netcore network create`` takes it: IPv4 ``subnet``/``ip_range``/
    ``gateway`` and IPv6 ``subnet6``/``gateway6`` (None: netcore chooses), ``options`` (the driver's),
    ``labels`` (the file's and Compose's), as sorted (key, value) pairs."""

    name: str
    driver: str = "bridge"
    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    subnet6: str | None = None
    gateway6: str | None = None
    internal: bool = False
    enable_ipv6: bool = False
    options: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def request(self) -> requests.NetworkSpec:
        """The engine's request for this network (netcore.requests.NetworkSpec), labels included."""
        return requests.NetworkSpec(
            self.name, self.driver, tuple(s for s in (self.subnet, self.subnet6) if s), self.ip_range,
            tuple(g for g in (self.gateway, self.gateway6) if g), self.internal, self.enable_ipv6, (),
            dict(self.options), dict(self.labels))


@dataclass(frozen=True)
class EndpointSpec:
    """A container's attachment: the ``network``'s real name, the names it answers there besides its own
    (service name, aliases, link aliases), fixed addresses (None: netcore allocates)."""

    network: str
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None


@dataclass(frozen=True)
class ContainerSpec:
    """A container to create. ``network_mode``: None (on ``endpoints``, the first is ``eth0``), ``host``,
    ``none``, ``bridge`` (netcore's default bridge) or ``container:NAME``; ``process``: the main process's
    argv, empty for none; ``extra_hosts``: (host, address) pairs for its hosts file."""

    name: str
    service: str
    number: int
    network_mode: str | None = None
    endpoints: tuple[EndpointSpec, ...] = ()
    ports: tuple[PublishSpec, ...] = ()
    hostname: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    process: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()

    def request(self) -> requests.ContainerSpec:
        """The engine's request for this container (netcore.requests.ContainerSpec): its endpoints as
        attachments in order (the first is eth0), ``network_mode`` as ``--net`` (``bridge``: the default
        bridge, with no aliases, as Compose gives it), the main process as ``command``."""
        mode = self.network_mode
        net = mode if mode in ("host", "none") or (mode or "").startswith("container:") else None
        attachments = tuple(requests.Attachment(e.network, e.aliases, e.ipv4_address, e.ipv6_address)
                            for e in self.endpoints)
        return requests.ContainerSpec(
            name=self.name, networks=attachments if net is None and mode != "bridge" else (), net=net,
            hostname=self.hostname, dns=self.dns, publish=self.ports, labels=dict(self.labels),
            dns_search=self.dns_search, extra_hosts=tuple(f"{host}:{address}" for host, address in self.extra_hosts),
            command=self.process)


@dataclass(frozen=True)
class Action:
    """One step: ``verb`` (create, recreate, keep, remove) on a ``kind`` (network, container) by ``name``;
    ``reason`` for a recreate or removal; ``spec`` what to build (create and recreate in the build phase)."""

    verb: str
    kind: str
    name: str
    reason: str = ""
    spec: NetworkSpec | ContainerSpec | None = None

    def line(self) -> str:
        """Compose's progress line once done: ``Container p-web-1  Recreated``."""
        return f"{self.kind.capitalize()} {self.name}  {DONE[self.verb]}"


@dataclass(frozen=True)
class Plan:
    """``teardown`` then ``build`` (module docstring); ``warnings`` to print first (orphans, ...)."""

    project: str
    teardown: tuple[Action, ...] = ()
    build: tuple[Action, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[Action, ...]:
        return self.teardown + self.build

    @property
    def changes(self) -> bool:
        """Whether running the plan changes anything (an ``up`` run twice plans none the second time)."""
        return any(a.verb != KEEP for a in self.actions)


def network_spec(project: Project, network: ComposeNetwork) -> NetworkSpec:
    """What the engine creates for ``network``, with Compose's labels (project, network key, config hash)."""
    v4, v6 = network.subnet4, network.subnet6
    labels = {**dict(network.labels), PROJECT_LABEL: project.name, NETWORK_LABEL: network.key,
              HASH_LABEL: network.config_hash}
    return NetworkSpec(network.name, network.driver, v4 and v4.subnet, v4 and v4.ip_range, v4 and v4.gateway,
                       v6 and v6.subnet, v6 and v6.gateway, network.internal, network.enable_ipv6,
                       network.driver_opts, tuple(sorted(labels.items())))


def container_spec(project: Project, service: Service, number: int,
                   namespace_owner: str | None = None) -> ContainerSpec:
    """What the engine creates for container ``number`` of ``service``; ``namespace_owner``: the container
    whose namespace ``network_mode: service:NAME`` shares (that service's first container)."""
    names = {n.key: n.name for n in project.networks}
    mode = service.network_mode
    if mode and mode.startswith("service:"):
        mode = f"container:{namespace_owner}"
    labels = {PROJECT_LABEL: project.name, SERVICE_LABEL: service.name, NUMBER_LABEL: str(number),
              HASH_LABEL: project.service_hash(service.name), ONEOFF_LABEL: "False",
              WORKING_DIR_LABEL: project.working_dir, CONFIG_FILES_LABEL: ",".join(project.config_files)}
    return ContainerSpec(
        project.container_name(service.name, number), service.name, number, mode,
        tuple(EndpointSpec(names[a.network], a.aliases, a.ipv4_address, a.ipv6_address) for a in service.networks),
        service.ports, service.hostname, service.dns, service.dns_search, service.extra_hosts, service.process,
        tuple(sorted(labels.items())))


def _refuse(project: str, problems: list[str]) -> ComposeError:
    return ComposeError(f"project {project}: " + "; ".join(problems) + "; nothing was created or removed")


def plan_up(project: Project, existing: Iterable[Existing], remove_orphans: bool = False) -> Plan:
    """The plan of ``compose up`` (module docstring). ComposeError, one line naming every conflict, when a
    name the project needs is held outside it, an external network or a ``container:`` peer is missing."""
    existing = list(existing)
    networks = {e.name: e for e in existing if e.kind == NETWORK}
    containers = {e.name: e for e in existing if e.kind == CONTAINER}
    problems: list[str] = []
    teardown: list[Action] = []
    build: list[Action] = []
    warnings: list[str] = []

    recreated_networks: set[str] = set()
    for network in project.used_networks:
        found = networks.get(network.name)
        if network.external:
            if found is None:
                problems.append(f"network {network.name} is declared as external, but could not be found")
            continue
        spec = network_spec(project, network)
        if found is None:
            build.append(Action(CREATE, NETWORK, network.name, spec=spec))
        elif not found.owned_by(project.name):
            problems.append(f"network {network.name} already exists, made by {found.owner()}")
        elif found.labels.get(HASH_LABEL) != network.config_hash:
            recreated_networks.add(network.name)
            teardown.append(Action(RECREATE, NETWORK, network.name, "its configuration changed"))
            build.append(Action(RECREATE, NETWORK, network.name, "its configuration changed", spec))
        else:
            build.append(Action(KEEP, NETWORK, network.name))

    ours = [c for c in containers.values() if c.owned_by(project.name)]
    services = {s.name for s in project.services}
    wanted_names: set[str] = set()
    removed: list[tuple[Existing, str, str]] = []  # (container, why, verb)
    container_build: list[Action] = []
    made_anew: set[str] = set()  # container names created or recreated by this plan
    first_of: dict[str, str] = {}
    for service in project.services:
        mine = sorted((c for c in ours if c.labels.get(SERVICE_LABEL) == service.name), key=lambda c: c.number)
        kept, extra = mine[:service.replicas], mine[service.replicas:]
        removed.extend((c, "scaled down", REMOVE) for c in extra)
        numbers = [c.number for c in kept]
        highest = max((c.number for c in mine), default=0)
        while len(numbers) < service.replicas:
            highest += 1
            numbers.append(highest)
        digest = project.service_hash(service.name)
        current = {c.number: c for c in kept}
        owner_mode = service.network_mode or ""
        for number in numbers:
            name = project.container_name(service.name, number)
            wanted_names.add(name)
            first_of.setdefault(service.name, name)
            owner = first_of.get(owner_mode.partition(":")[2]) if owner_mode.startswith("service:") else None
            spec = container_spec(project, service, number, owner)
            holder = containers.get(name)
            old = current.get(number)
            if holder is not None and not holder.owned_by(project.name):
                problems.append(f"container {name} already exists, made by {holder.owner()}")
                continue
            if holder is not None and holder is not old:
                removed.append((holder, f"its name is now service {service.name}'s", REMOVE))
                container_build.append(Action(RECREATE, CONTAINER, name, "its name changed hands", spec))
                made_anew.add(name)
                if old is not None:
                    removed.append((old, f"renamed to {name}", REMOVE))
                continue
            if old is None:
                container_build.append(Action(CREATE, CONTAINER, name, spec=spec))
                made_anew.add(name)
                continue
            if old.name != name:
                removed.append((old, f"renamed to {name}", REMOVE))
                container_build.append(Action(CREATE, CONTAINER, name, spec=spec))
                made_anew.add(name)
                continue
            reason = ""
            if old.labels.get(HASH_LABEL) != digest:
                reason = "its configuration changed"
            elif recreated_networks & {e.network for e in spec.endpoints}:
                reason = f"network {sorted(recreated_networks & {e.network for e in spec.endpoints})[0]} is recreated"
            elif owner is not None and owner in made_anew:
                reason = f"the container whose namespace it shares, {owner}, is made anew"
            if reason:
                removed.append((old, reason, RECREATE))
                container_build.append(Action(RECREATE, CONTAINER, name, reason, spec))
                made_anew.add(name)
            else:
                container_build.append(Action(KEEP, CONTAINER, name))
        peer = owner_mode.partition(":")[2] if owner_mode.startswith("container:") else None
        if peer is not None and peer not in containers:
            problems.append(f"container {peer} (network_mode of service {service.name}) does not exist")

    orphans = sorted((c for c in ours if c.labels.get(SERVICE_LABEL) not in services and c.name not in
                      wanted_names), key=lambda c: c.name)
    if orphans and remove_orphans:
        removed.extend((c, "orphan: its service is no longer in the file", REMOVE) for c in orphans)
    elif orphans:
        warnings.append(f"Found orphan containers ({', '.join(c.name for c in orphans)}) for this project. If you "
                        "removed or renamed this service in your compose file, you can run this command with the "
                        "--remove-orphans flag to clean it up.")
    if problems:
        raise _refuse(project.name, problems)

    order = {s.name: i for i, s in enumerate(project.services)}
    seen: set[str] = set()
    container_teardown = []
    # dependents before what they stand on: the reverse of the start order, orphans last, highest numbers first
    for container, reason, verb in sorted(removed, key=lambda r: (-order.get(r[0].labels.get(SERVICE_LABEL), -1),
                                                                  -r[0].number)):
        if container.name not in seen:
            seen.add(container.name)
            container_teardown.append(Action(verb, CONTAINER, container.name, reason))
    return Plan(project.name, tuple(container_teardown + teardown), tuple(build + container_build), tuple(warnings))


def plan_down(project_name: str, existing: Iterable[Existing], project: Project | None = None,
              remove_orphans: bool = False) -> Plan:
    """The plan of ``compose down``: the project's containers (of the file's services, and orphans with
    ``remove_orphans``; every one when there is no file), then its networks (the file's, never external
    ones; every one when there is no file). Nothing outside the project; a network that still has a
    container outside the project is left, with a warning."""
    existing = list(existing)
    ours = [e for e in existing if e.owned_by(project_name)]
    services = {s.name: i for i, s in enumerate(project.services)} if project else None
    containers = [c for c in ours if c.kind == CONTAINER and (
        services is None or c.labels.get(SERVICE_LABEL) in services or remove_orphans)]
    warnings = []
    if services is not None and not remove_orphans:
        orphans = sorted(c.name for c in ours if c.kind == CONTAINER and c.labels.get(SERVICE_LABEL) not in services)
        if orphans:
            warnings.append(f"Found orphan containers ({', '.join(orphans)}) for this project. If you removed or "
                            "renamed this service in your compose file, you can run this command with the "
                            "--remove-orphans flag to clean it up.")
    containers.sort(key=lambda c: (-(services or {}).get(c.labels.get(SERVICE_LABEL), -1), -c.number, c.name))
    leaving = {c.name for c in containers}
    declared = {n.name for n in project.networks if not n.external} if project else None
    teardown = [Action(REMOVE, CONTAINER, c.name) for c in containers]
    for network in sorted((e for e in ours if e.kind == NETWORK), key=lambda e: e.name):
        if declared is not None and network.name not in declared:
            continue
        users = sorted(e.name for e in existing if e.kind == CONTAINER and network.name in e.networks
                       and e.name not in leaving)
        if users:
            warnings.append(f"network {network.name} is left in place: containers outside this down still use it "
                            f"({', '.join(users)})")
            continue
        teardown.append(Action(REMOVE, NETWORK, network.name))
    return Plan(project_name, tuple(teardown), (), tuple(warnings))
