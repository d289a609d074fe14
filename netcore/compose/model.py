"""The normalised Compose project: what netcore applies of a Compose file, as frozen records; pure.

``normalize(document, name, ...)`` turns the merged, validated document into a ``Project``:

- **networks** (``ComposeNetwork``): ``driver`` (bridge unless given; the engine's driver registry
  judges it), ``driver_opts``, ``ipam.config`` (at most one IPv4 and one IPv6 pool: ``subnet``,
  ``ip_range``, ``gateway``), ``internal``, ``enable_ipv6``, ``labels``, ``external``, ``name``. Its
  name is ``name:`` if given, else ``PROJECT_KEY`` (an external network: its key). A service that names
  no network and has no ``network_mode`` is on ``default``, which is ``PROJECT_default`` unless the file
  declares ``default`` itself (compose-go ``normalizeNetworks``).
- **services** (``Service``), in the order they start (each after what it depends on): ``networks``
  (list or mapping; ``aliases``, ``ipv4_address``, ``ipv6_address``; ordered as Compose connects them:
  higher ``priority`` first, then by name), ``network_mode`` (``host``, ``none``, ``bridge``,
  ``service:NAME``, ``container:NAME``), ``ports`` (short and long syntax, ranges, an empty host IP
  meaning every address; netcore's ``-p`` grammar, ``netcore.ports``, decides the rest), ``hostname``,
  ``container_name``, ``dns``, ``dns_search``, ``extra_hosts``, ``links`` (``SERVICE[:ALIAS]``: the
  dependency, and ALIAS as a network alias of SERVICE's containers on the networks both share),
  ``depends_on`` (order only), ``deploy.replicas``/``scale``, ``entrypoint``/``command`` (the main
  process: a string is split as a shell splits words, as Compose does, not run by a shell).
- Every container answers its service name on each of its networks (Compose's network alias), so the
  replicas of a service share one name.
- What netcore does not apply (images, volumes, environment, secrets, ...) is accepted and listed in
  ``Project.not_applied``; ``x-`` keys are ignored, and ``version`` with a warning, as in Compose.
- ``config_hash``: per service and per network, a SHA-256 of exactly what netcore applies of it, so it
  changes when, and only when, the object must be made anew (what Compose keeps in the
  ``com.docker.compose.config-hash`` label). A service's replica count is not in it (scaling adds or
  removes containers, as in Compose), nor are its dependencies.

Every refusal is one line ``FILE:LINE: PATH: ...``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import shlex
from dataclasses import dataclass, field, replace

from netcore.compose.document import Document
from netcore.compose.errors import ComposeError, Path
from netcore.errors import NetcoreError
from netcore.ipam import parse_subnet
from netcore.model import NAME_MAX, NAME_RE, parse_dns_server
from netcore.ports import PublishError, PublishSpec, parse_publish

DEFAULT_NETWORK = "default"
NETWORK_MODES = ("host", "none", "bridge")  # and service:NAME, container:NAME

# what netcore applies; every other key is accepted and listed as not applied
TOP_LEVEL_KEYS = ("name", "services", "networks")
SERVICE_KEYS = ("networks", "network_mode", "ports", "hostname", "container_name", "dns", "dns_search",
                "extra_hosts", "links", "depends_on", "deploy", "scale", "command", "entrypoint", "extends")
NETWORK_KEYS = ("name", "driver", "driver_opts", "ipam", "internal", "enable_ipv6", "labels", "external")
ATTACHMENT_KEYS = ("aliases", "ipv4_address", "ipv6_address", "priority")
PORT_KEYS = ("target", "published", "host_ip", "protocol", "mode", "name", "app_protocol")


def config_hash(document: dict) -> str:
    """SHA-256 (64 hex) of a JSON document with sorted keys: the same document, the same hash, always."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def publish_text(spec: PublishSpec) -> str:
    """A PublishSpec as ``run -p`` reads it back (``127.0.0.1:8000-8001:80-81/tcp``): its canonical form."""
    ip = f"[{spec.host_ip}]" if ":" in spec.host_ip else spec.host_ip
    first, last = spec.container_ports
    container = str(first) if first == last else f"{first}-{last}"
    return f"{ip}:{spec.requested}:{container}/{spec.protocol}"


@dataclass(frozen=True)
class IpamPool:
    """One ``ipam.config`` entry: ``subnet`` (CIDR), ``ip_range`` (IPv4 CIDR inside it), ``gateway``."""

    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None

    @property
    def version(self) -> int | None:
        return ipaddress.ip_network(self.subnet).version if self.subnet else None


@dataclass(frozen=True)
class ComposeNetwork:
    """A network of the project. ``key``: its name in the file; ``name``: the network's real name;
    ``external``: made outside Compose (never created nor removed, must exist); ``driver_opts`` and
    ``labels`` as sorted (key, value) pairs of strings."""

    key: str
    name: str
    external: bool = False
    driver: str = "bridge"
    driver_opts: tuple[tuple[str, str], ...] = ()
    ipam: tuple[IpamPool, ...] = ()
    internal: bool = False
    enable_ipv6: bool = False
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def subnet4(self) -> IpamPool | None:
        return next((p for p in self.ipam if p.version == 4), None)

    @property
    def subnet6(self) -> IpamPool | None:
        return next((p for p in self.ipam if p.version == 6), None)

    @property
    def config_hash(self) -> str:
        """The hash of what netcore builds of this network (module docstring)."""
        return config_hash({"name": self.name, "driver": self.driver, "driver_opts": self.driver_opts,
                            "ipam": [[p.subnet, p.ip_range, p.gateway] for p in self.ipam],
                            "internal": self.internal, "enable_ipv6": self.enable_ipv6, "labels": self.labels})


@dataclass(frozen=True)
class ServiceNetwork:
    """A service's attachment to the network ``network`` (its key in the file): the names its containers
    answer there besides their own (the service name, ``aliases``, link aliases), and fixed addresses."""

    network: str
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    ipv6_address: str | None = None


@dataclass(frozen=True)
class Service:
    """A service as netcore applies it (module docstring). ``networks`` in attach order (the first is
    ``eth0``), empty with a ``network_mode``; ``depends_on``: every service that must exist first (its
    own ``depends_on``, ``links`` and ``network_mode: service:``); ``process``: the main process's argv
    (``entrypoint`` then ``command``), empty when the file gives neither."""

    name: str
    networks: tuple[ServiceNetwork, ...] = ()
    network_mode: str | None = None
    ports: tuple[PublishSpec, ...] = ()
    hostname: str | None = None
    container_name: str | None = None
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (service, alias)
    depends_on: tuple[str, ...] = ()
    replicas: int = 1
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None

    @property
    def process(self) -> tuple[str, ...]:
        return (*(self.entrypoint or ()), *(self.command or ()))

    def hash_document(self, network_names: dict[str, str]) -> dict:
        """What the config hash covers, with each network by its real name (``network_names``: key -> name)."""
        return {
            "networks": [[network_names[n.network], list(n.aliases), n.ipv4_address, n.ipv6_address]
                         for n in self.networks],
            "network_mode": self.network_mode, "ports": [publish_text(p) for p in self.ports],
            "hostname": self.hostname, "container_name": self.container_name, "dns": list(self.dns),
            "dns_search": list(self.dns_search), "extra_hosts": [list(h) for h in self.extra_hosts],
            "entrypoint": self.entrypoint, "command": self.command,
        }


@dataclass(frozen=True)
class Project:
    """A Compose project: its ``name``, directory and files, its ``networks`` (every one declared, and
    ``default`` when a service uses it) and ``services`` (in start order), the keys netcore does not
    apply (``not_applied``: ``services.*.image``, ``volumes``, ...) and warnings met while reading."""

    name: str
    working_dir: str = ""
    config_files: tuple[str, ...] = ()
    networks: tuple[ComposeNetwork, ...] = ()
    services: tuple[Service, ...] = ()
    not_applied: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def network(self, key: str) -> ComposeNetwork:
        return next(n for n in self.networks if n.key == key)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    @property
    def used_networks(self) -> tuple[ComposeNetwork, ...]:
        """The networks some service is on: the ones ``up`` makes (Compose's WithoutUnnecessaryResources)."""
        used = {a.network for s in self.services for a in s.networks}
        return tuple(n for n in self.networks if n.key in used)

    def service_hash(self, name: str) -> str:
        """The config hash of service ``name`` (module docstring)."""
        names = {n.key: n.name for n in self.networks}
        return config_hash(self.service(name).hash_document(names))

    def container_name(self, service: str, number: int) -> str:
        """Compose's name of a service's container: ``container_name``, else ``PROJECT-SERVICE-NUMBER``."""
        explicit = self.service(service).container_name
        return explicit or f"{self.name}-{service}-{number}"

    def not_applied_line(self) -> str | None:
        """The one stderr line listing what is not applied, or None: ``not applied by netcore (outside
        networking and processes): services: build, image, volumes; top level: secrets, volumes``."""
        if not self.not_applied:
            return None
        groups: dict[str, list[str]] = {}
        for key in self.not_applied:
            head, _, rest = key.partition(".*.")
            group, name = (head, rest) if rest else ("top level", key)
            groups.setdefault(group, []).append(name)
        return "not applied by netcore (outside networking and processes): " + "; ".join(
            f"{group}: {', '.join(names)}" for group, names in groups.items())


# -- reading the document --------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, document: Document, project: str):
        self.doc = document
        self.project = project
        self.not_applied: set[str] = set()
        self.warnings: list[str] = []

    def fail(self, path: Path, message: str) -> ComposeError:
        return self.doc.error(path, message)

    def strings(self, value, path: Path) -> tuple[str, ...]:
        """A string_or_list value as a tuple of strings."""
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return tuple(str(v) for v in value)

    def mapping(self, value, path: Path) -> dict[str, str]:
        """A list_or_dict value (``[K=V, K]`` or ``{K: V}``) as {str: str}; null and a bare K are ''."""
        if value is None:
            return {}
        if isinstance(value, list):
            pairs = (str(item).partition("=") for item in value)
            return {k: v for k, _, v in pairs}
        return {str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in value.items()}

    def skip(self, group: str, value: dict, applied: tuple[str, ...]) -> None:
        for key in value:
            if key not in applied and not key.startswith("x-"):
                self.not_applied.add(f"{group}{key}")

    def check_name(self, name: str, path: Path, what: str) -> str:
        if not NAME_RE.match(name) or len(name) > NAME_MAX:
            raise self.fail(path, f"{what} {name!r} is not a valid name for netcore: up to {NAME_MAX} letters, "
                                  "digits, '_', '.' or '-', starting with a letter or digit")
        return name

    # networks ------------------------------------------------------------------------------------------------

    def network(self, key: str, spec: dict | None) -> ComposeNetwork:
        path = ("networks", key)
        spec = spec or {}
        self.skip("networks.*.", spec, NETWORK_KEYS)
        external = spec.get("external")
        external_name = external.get("name") if isinstance(external, dict) else None
        is_external = bool(external) if not isinstance(external, dict) else True
        if is_external:
            extra = [k for k in spec if k not in ("name", "external") and not k.startswith("x-")]
            if extra:
                raise self.fail((*path, extra[0]), f"conflicting parameters \"external\" and {extra[0]!r}: an "
                                                   "external network is made outside Compose")
            if external_name and spec.get("name") and external_name != spec["name"]:
                raise self.fail((*path, "external"), "external.name and name differ")
        name = spec.get("name") or external_name or (key if is_external else f"{self.project}_{key}")
        self.check_name(str(name), (*path, "name") if spec.get("name") else path, "network name")
        ipam = spec.get("ipam") or {}
        for ipam_key in ipam:
            if ipam_key not in ("config", "driver") and not ipam_key.startswith("x-"):
                self.not_applied.add(f"networks.*.ipam.{ipam_key}")
        if ipam.get("driver") not in (None, "default"):
            self.not_applied.add("networks.*.ipam.driver")
        pools = tuple(self.pool(entry or {}, (*path, "ipam", "config", i))
                      for i, entry in enumerate(ipam.get("config") or ()))
        for version in (4, 6):
            same = [i for i, p in enumerate(pools) if p.version == version]
            if len(same) > 1:
                raise self.fail((*path, "ipam", "config", same[1]), f"a second IPv{version} subnet: netcore gives "
                                                                     "a network at most one IPv4 and one IPv6 subnet")
        enable_ipv6 = bool(spec.get("enable_ipv6", False))
        v6 = next((i for i, p in enumerate(pools) if p.version == 6), None)
        if v6 is not None and not enable_ipv6:
            raise self.fail((*path, "ipam", "config", v6), "an IPv6 subnet needs enable_ipv6: true")
        opts = tuple(sorted((str(k), str(v).lower() if isinstance(v, bool) else str(v))
                            for k, v in (spec.get("driver_opts") or {}).items()))
        return ComposeNetwork(key, str(name), is_external, str(spec.get("driver") or "bridge"), opts, pools,
                              bool(spec.get("internal", False)), enable_ipv6,
                              tuple(sorted(self.mapping(spec.get("labels"), (*path, "labels")).items())))

    def pool(self, entry: dict, path: Path) -> IpamPool:
        for key in entry:
            if key not in ("subnet", "ip_range", "gateway") and not key.startswith("x-"):
                self.not_applied.add(f"networks.*.ipam.config[].{key}")
        try:
            subnet = parse_subnet(entry["subnet"]) if entry.get("subnet") else None
        except NetcoreError as err:
            raise self.fail((*path, "subnet"), str(err)) from None
        ip_range = entry.get("ip_range")
        if ip_range:
            try:
                parsed = ipaddress.ip_network(ip_range)
            except ValueError:
                raise self.fail((*path, "ip_range"), f"invalid ip_range {ip_range!r}: expected a CIDR") from None
            if parsed.version != 4:
                raise self.fail((*path, "ip_range"), "netcore takes an ip_range for the IPv4 subnet only")
            if subnet is None or not parsed.subnet_of(subnet):
                raise self.fail((*path, "ip_range"), f"ip_range {ip_range} is not inside the subnet")
        gateway = entry.get("gateway")
        if gateway:
            try:
                address = ipaddress.ip_address(gateway)
            except ValueError:
                raise self.fail((*path, "gateway"), f"invalid gateway {gateway!r}: expected an IP address") from None
            if subnet is None or address not in subnet:
                raise self.fail((*path, "gateway"), f"gateway {gateway} is not inside the subnet")
        if subnet is None and (ip_range or gateway):
            raise self.fail(path, "ip_range and gateway need a subnet")
        return IpamPool(str(subnet) if subnet else None, ip_range or None, gateway or None)

    # services ------------------------------------------------------------------------------------------------

    def attachments(self, name: str, spec: dict, networks: dict[str, ComposeNetwork],
                    replicas: int) -> tuple[ServiceNetwork, ...]:
        path = ("services", name, "networks")
        raw = spec.get("networks")
        if isinstance(raw, list):
            entries = {str(n): (None, (*path, i)) for i, n in enumerate(raw)}
        else:
            entries = {str(k): (v, (*path, k)) for k, v in (raw or {}).items()}
        if not entries:
            entries = {DEFAULT_NETWORK: (None, ("services", name))}
        found = []
        for key, (entry, where) in entries.items():
            if key not in networks:
                raise self.fail(where, f"service {name!r} refers to undefined network {key!r}: declare it under "
                                       "the top-level networks:")
            entry = entry or {}
            self.skip("services.*.networks.*.", entry, ATTACHMENT_KEYS)
            network = networks[key]
            v4 = self.address(entry.get("ipv4_address"), 4, network, (*where, "ipv4_address"), replicas)
            v6 = self.address(entry.get("ipv6_address"), 6, network, (*where, "ipv6_address"), replicas)
            aliases = self.strings(entry.get("aliases"), (*where, "aliases"))
            for i, alias in enumerate(aliases):
                self.check_name(alias, (*where, "aliases", i), "alias")
            priority = entry.get("priority") or 0
            found.append((-priority, key, ServiceNetwork(key, tuple(dict.fromkeys((name, *aliases))), v4, v6)))
        return tuple(item for _, _, item in sorted(found, key=lambda t: (t[0], t[1])))

    def address(self, text, version: int, network: ComposeNetwork, path: Path, replicas: int) -> str | None:
        if not text:
            return None
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise self.fail(path, f"invalid IPv{version} address {text!r}") from None
        if address.version != version:
            raise self.fail(path, f"{text} is not an IPv{version} address")
        pool = network.subnet4 if version == 4 else network.subnet6
        if not network.external:
            if pool is None:
                raise self.fail(path, f"a fixed address needs a subnet on network {network.key!r} (ipam: config: "
                                      "- subnet: ...), as Docker requires")
            if address not in ipaddress.ip_network(pool.subnet):
                raise self.fail(path, f"{text} is not inside network {network.key!r}'s subnet {pool.subnet}")
        if replicas > 1:
            raise self.fail(path, f"a fixed address with {replicas} replicas: each container needs its own")
        return str(address)

    def ports(self, name: str, value) -> tuple[PublishSpec, ...]:
        specs = []
        for index, item in enumerate(value or ()):
            path = ("services", name, "ports", index)
            try:
                specs.append(self.port(item, path))
            except PublishError as err:
                raise self.fail(path, str(err)) from None
        return tuple(specs)

    def port(self, item, path: Path) -> PublishSpec:
        if isinstance(item, dict):
            for key in item:
                if key not in PORT_KEYS and not key.startswith("x-"):
                    self.not_applied.add(f"services.*.ports[].{key}")
            target = item.get("target")
            if target in (None, ""):
                raise self.fail(path, "a port mapping needs a target (the container's port)")
            host_ip = str(item.get("host_ip") or "")
            if ":" in host_ip and not host_ip.startswith("["):
                host_ip = f"[{host_ip}]"
            published = "" if item.get("published") is None else str(item["published"])
            text = f"{host_ip}:{published}:{target}" if host_ip else f"{published}:{target}" if published \
                else str(target)
            return parse_publish(f"{text}/{item.get('protocol') or 'tcp'}")
        text = str(item)
        body, slash, protocol = text.partition("/")
        if body.startswith(":") and body.count(":") == 2:
            body = body[1:]  # an empty host IP, as Docker's nat.ParsePortSpec reads it: every address
        return parse_publish(body + slash + protocol)

    def extra_hosts(self, name: str, value) -> tuple[tuple[str, str], ...]:
        hosts: list[tuple[str, str]] = []
        path = ("services", name, "extra_hosts")
        if isinstance(value, dict):
            items = [((*path, host), host, [ip] if isinstance(ip, str) else [str(i) for i in ip or ()])
                     for host, ip in value.items()]
        else:
            items = []
            for i, entry in enumerate(value or ()):
                text = str(entry)
                separator = "=" if "=" in text else ":"
                host, found, ips = text.partition(separator)
                if not found:
                    raise self.fail((*path, i), f"extra host {text!r} has no address: write HOST=IP or HOST:IP")
                items.append(((*path, i), host, ips.split(",")))
        for where, host, ips in items:
            if not host or ":" in host or "=" in host:
                raise self.fail(where, f"bad host name {host!r}")
            for ip in ips:
                ip = ip[1:-1] if len(ip) > 2 and ip.startswith("[") and ip.endswith("]") else ip
                if ip != "host-gateway":
                    try:
                        ip = str(ipaddress.ip_address(ip))
                    except ValueError:
                        raise self.fail(where, f"extra host {host}: {ip!r} is not an IP address") from None
                hosts.append((host, ip))
        return tuple(hosts)

    def process(self, name: str, spec: dict, key: str) -> tuple[str, ...] | None:
        value = spec.get(key)
        if value is None:
            return None
        if isinstance(value, list):
            return tuple(str(v) for v in value)
        try:
            return tuple(shlex.split(value))
        except ValueError as err:
            raise self.fail(("services", name, key), f"cannot split {value!r} into words: {err}") from None

    def replicas(self, name: str, spec: dict) -> int:
        path = ("services", name)
        deploy = spec.get("deploy") or {}
        for key in deploy:
            if key != "replicas" and not key.startswith("x-"):
                self.not_applied.add(f"services.*.deploy.{key}")
        scale, replicas = spec.get("scale"), deploy.get("replicas")
        for value, where in ((scale, (*path, "scale")), (replicas, (*path, "deploy", "replicas"))):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise self.fail(where, f"must be a whole number of containers, 0 or more (not {value!r})")
        if scale is not None and replicas is not None and scale != replicas:
            raise self.fail((*path, "scale"), "can't set distinct values on 'scale' and 'deploy.replicas'")
        return scale if scale is not None else replicas if replicas is not None else 1

    def dependencies(self, name: str, spec: dict, services: dict) -> tuple[tuple[str, ...], tuple]:
        path = ("services", name)
        wanted: list[str] = []
        raw = spec.get("depends_on") or {}
        entries = {str(d): {} for d in raw} if isinstance(raw, list) else raw
        for i, (other, options) in enumerate(entries.items()):
            where = (*path, "depends_on", i if isinstance(raw, list) else other)
            options = options or {}
            if options.get("condition", "service_started") != "service_started":
                self.not_applied.add(f"services.*.depends_on.condition: {options['condition']}")
            if other not in services:
                if options.get("required", True) is False:
                    self.warnings.append(f"{self.doc.location(where)}: service {name!r} depends on undefined "
                                         f"service {other!r}, which is not required: ignored")
                    continue
                raise self.fail(where, f"service {name!r} depends on undefined service {other!r}")
            wanted.append(other)
        links = []
        for i, link in enumerate(spec.get("links") or ()):
            other, _, alias = str(link).partition(":")
            if other not in services:
                raise self.fail((*path, "links", i), f"service {name!r} links to undefined service {other!r}")
            if alias:
                self.check_name(alias, (*path, "links", i), "link alias")
            links.append((other, alias or other))
            wanted.append(other)
        mode = spec.get("network_mode") or ""
        if mode.startswith("service:"):
            wanted.append(mode.partition(":")[2])
        if name in wanted:
            raise self.fail(path, f"dependency cycle detected: {name} -> {name}")
        return tuple(dict.fromkeys(wanted)), tuple(links)

    def network_mode(self, name: str, spec: dict, services: dict) -> str | None:
        mode = spec.get("network_mode")
        if mode is None:
            return None
        path = ("services", name, "network_mode")
        if spec.get("networks"):
            raise self.fail(path, f"service {name} declares mutually exclusive `network_mode` and `networks`")
        kind, colon, target = str(mode).partition(":")
        if not colon and mode in NETWORK_MODES:
            return mode
        if colon and kind == "service":
            if target not in services:
                raise self.fail(path, f"service {target!r} not found for network_mode 'service:{target}'")
            return mode
        if colon and kind == "container" and target:
            return mode
        raise self.fail(path, f"network_mode {mode!r}: expected host, none, bridge, service:NAME or container:NAME")

    def service(self, name: str, spec: dict | None, services: dict,
                networks: dict[str, ComposeNetwork]) -> Service:
        spec = spec or {}
        path = ("services", name)
        self.check_name(name, path, "service name")
        self.skip("services.*.", spec, SERVICE_KEYS)
        replicas = self.replicas(name, spec)
        container_name = spec.get("container_name")
        if container_name is not None:
            self.check_name(str(container_name), (*path, "container_name"), "container_name")
            if replicas > 1:
                raise self.fail((*path, "container_name"), f"can't set container_name with {replicas} replicas: "
                                                           "a container name must be unique")
        else:
            longest = f"{self.project}-{name}-{max(replicas, 1)}"
            self.check_name(longest, path, "container name")
        mode = self.network_mode(name, spec, services)
        depends_on, links = self.dependencies(name, spec, services)
        dns = self.strings(spec.get("dns"), (*path, "dns"))
        for i, server in enumerate(dns):
            try:
                parse_dns_server(server)
            except ValueError as err:
                raise self.fail((*path, "dns", i) if isinstance(spec.get("dns"), list) else (*path, "dns"),
                                str(err)) from None
        hostname = spec.get("hostname")
        return Service(
            name=name,
            networks=() if mode else self.attachments(name, spec, networks, replicas),
            network_mode=mode,
            ports=self.ports(name, spec.get("ports")),
            hostname=None if hostname is None else str(hostname),
            container_name=None if container_name is None else str(container_name),
            dns=dns,
            dns_search=self.strings(spec.get("dns_search"), (*path, "dns_search")),
            extra_hosts=self.extra_hosts(name, spec.get("extra_hosts")),
            links=links,
            depends_on=depends_on,
            replicas=replicas,
            entrypoint=self.process(name, spec, "entrypoint"),
            command=self.process(name, spec, "command"),
        )


def _start_order(services: dict[str, Service], reader: _Reader) -> list[Service]:
    """Each service after the ones it depends on, otherwise in file order; a cycle is one error line."""
    ordered: list[Service] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*trail[trail.index(name):], name]
            raise reader.fail(("services", cycle[0], "depends_on"),
                              f"dependency cycle detected: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for other in services[name].depends_on:
            visit(other, [*trail, name])
        state[name] = "done"
        ordered.append(services[name])

    for name in services:
        visit(name, [])
    return ordered


def _with_link_aliases(services: list[Service]) -> list[Service]:
    """Each linked service's containers answer the link's alias on the networks they share with the linker."""
    extra: dict[tuple[str, str], list[str]] = {}
    by_name = {s.name: s for s in services}
    for service in services:
        mine = {a.network for a in service.networks}
        for other, alias in service.links:
            for attachment in by_name[other].networks:
                if attachment.network in mine:
                    extra.setdefault((other, attachment.network), []).append(alias)
    result = []
    for service in services:
        networks = tuple(
            ServiceNetwork(a.network, tuple(dict.fromkeys((*a.aliases, *extra.get((service.name, a.network), ())))),
                           a.ipv4_address, a.ipv6_address)
            for a in service.networks)
        result.append(replace(service, networks=networks))
    return result


def normalize(document: Document, project: str, working_dir: str = "",
              config_files: tuple[str, ...] = ()) -> Project:
    """The Project a merged, validated, interpolated Compose document describes (module docstring).
    ComposeError ``FILE:LINE: PATH: ...`` for what netcore cannot apply as written."""
    reader = _Reader(document, project)
    data = document.data
    if "version" in data:
        reader.warnings.append(f"{document.location(('version',))}: the attribute `version` is obsolete, it will "
                               "be ignored")
    for key in data:
        if key not in (*TOP_LEVEL_KEYS, "version") and not key.startswith("x-"):
            reader.not_applied.add(key)
    raw_services = data.get("services") or {}
    if not raw_services and not data.get("networks"):
        raise ComposeError(f"{document.file}: no services and no networks: nothing to do (empty compose file)")
    declared = data.get("networks") or {}
    uses_default = any(not (spec or {}).get("network_mode") and not (spec or {}).get("networks")
                       for spec in raw_services.values())
    networks = {key: reader.network(str(key), spec) for key, spec in declared.items()}
    if uses_default and DEFAULT_NETWORK not in networks:
        networks[DEFAULT_NETWORK] = ComposeNetwork(DEFAULT_NETWORK, f"{project}_{DEFAULT_NETWORK}")
        reader.check_name(networks[DEFAULT_NETWORK].name, (), "network name")
    services = {str(name): reader.service(str(name), spec, raw_services, networks)
                for name, spec in raw_services.items()}
    names: dict[str, str] = {}
    for service in services.values():
        for number in range(1, service.replicas + 1):
            container = service.container_name or f"{project}-{service.name}-{number}"
            if container in names:
                raise reader.fail(("services", service.name), f"container name {container!r} is taken by service "
                                                              f"{names[container]!r} too")
            names[container] = service.name
    ordered = _with_link_aliases(_start_order(services, reader))
    return Project(project, working_dir, tuple(config_files), tuple(networks.values()), tuple(ordered),
                   tuple(sorted(reader.not_applied)), tuple(reader.warnings))
