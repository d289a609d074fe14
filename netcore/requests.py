"""One request per user action: what `network create`, `run` and `network connect` ask for, pure.

The command line, topology and Compose files build these; the engine takes them whole. ``check()`` is the
one place a request is checked before anything is read or written: names, addresses and servers are
parsed and normalised, combinations Docker refuses are refused, each with one NetcoreError line. What
needs the store or the kernel (a taken name, a free subnet, a driver's view of the gateway namespace) is
the engine's. A network driver checks its own options (netcore.network, ``NetworkDriver.validate``).

Every request is a frozen dataclass of plain values with ``to_dict``/``from_dict`` (JSON-safe), so a client
can send it to the per-host agent as it is.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field, fields, replace

from netcore.errors import NetcoreError
from netcore.model import (
    DEFAULT_BRIDGE,
    DNS_PORT,
    MODE_BRIDGE,
    MODE_CONTAINER,
    MODE_HOST,
    MODE_NONE,
    NAME_MAX,
    NAME_RE,
    parse_dns_server,
)
from netcore.ports import PublishSpec

RESERVED_NETWORKS = (MODE_HOST, MODE_NONE)  # `--net host` and `--net none` are modes, not networks
HOST_GATEWAY = "host-gateway"  # --add-host NAME:host-gateway: the gateway of the container's first network
# a search domain as Docker's ValidateDNSSearch takes it (opts/dns.go): labels of letters, digits and '-'
_LABEL = r"[a-zA-Z0-9_](?:[a-zA-Z0-9_-]*[a-zA-Z0-9_])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")


def validate_name(name: str, what: str) -> str:
    """``name`` if it is a valid container, network, alias or hostname (Docker's rule, ``model.NAME_RE``,
    at most ``NAME_MAX`` characters so it always fits a DNS label and a namespace name); else NetcoreError
    ``invalid WHAT name ...``."""
    if not name or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise NetcoreError(f"invalid {what} name {name!r}: use up to {NAME_MAX} of [a-zA-Z0-9_.-], "
                           "starting with a letter or digit")
    return name


def parse_server(text: str) -> str:
    """A DNS server as users write it (``IP``, ``IP:PORT``, ``[IPv6]:PORT``), normalised as the store keeps
    it: the address alone for port 53. NetcoreError ``invalid DNS server ...`` otherwise."""
    try:
        address, port = parse_dns_server(text)
    except ValueError as err:
        raise NetcoreError(f"invalid {str(err).removeprefix('bad ')}") from None
    if port == DNS_PORT:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def parse_search_domain(text: str) -> str:
    """A ``--dns-search`` domain as Docker's ValidateDNSSearch takes it: ``.`` (no search domain at all), or a
    domain name of at most 255 characters (a trailing dot dropped). NetcoreError otherwise."""
    text = text.strip()
    if text == ".":
        return text
    if not text or len(text) > 255 or not _DOMAIN.match(text):
        raise NetcoreError(f"invalid --dns-search domain {text!r}: a domain name such as corp.example, or '.'")
    return text.rstrip(".")


def parse_extra_host(text: str) -> str:
    """An ``--add-host`` entry, ``HOST:IP`` or ``HOST=IP`` (Docker 25's two spellings; an IPv6 address may be
    in brackets), normalised to ``HOST:IP``; IP may be ``host-gateway``. NetcoreError otherwise."""
    separator = "=" if "=" in text else ":"
    host, found, address = text.partition(separator)
    host, address = host.strip(), address.strip()
    if len(address) > 2 and address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not found or not host or ":" in host or any(c.isspace() for c in host):
        raise NetcoreError(f"invalid --add-host {text!r}: expected HOST:IP or HOST=IP")
    if address != HOST_GATEWAY:
        address = _address(address, f"--add-host address of {host}")
    return f"{host}:{address}"


def _address(text: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise NetcoreError(f"invalid {what} {text!r}: not an IP address") from None


def _network(text: str, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as err:
        raise NetcoreError(f"invalid {what} {text!r}: {err}") from None


class _Plain:
    """``to_dict``/``from_dict`` for the requests below: JSON-safe dicts, tuples as lists."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The request from ``to_dict``'s output; NetcoreError for a key it does not know or a bad value."""
        if not isinstance(data, dict):
            raise NetcoreError(f"a {cls.__name__} is a mapping, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise NetcoreError(f"unknown field {unknown[0]!r} in a {cls.__name__}")
        try:
            return cls._decode(dict(data))
        except (TypeError, ValueError) as err:
            raise NetcoreError(f"malformed {cls.__name__}: {err}") from None

    @classmethod
    def _decode(cls, data: dict):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class NetworkSpec(_Plain):
    """``network create``: Docker's options. ``subnets``: at most one IPv4 and one IPv6 CIDR; ``gateways``:
    at most one per family, each inside its subnet's family; ``ip_range``: IPv4 only; ``dns``: upstream
    servers (``IP[:PORT]``); ``options``: the driver's ``-o KEY=VALUE`` (the driver checks them);
    ``labels``: ``--label`` (kept, shown by inspect)."""

    name: str
    driver: str = "bridge"
    subnets: tuple[str, ...] = ()
    ip_range: str | None = None
    gateways: tuple[str, ...] = ()
    internal: bool = False
    ipv6: bool = False
    dns: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def check(self) -> NetworkSpec:
        """This request normalised (addresses and CIDRs as ``ipaddress`` prints them, servers as the store
        keeps them, option values as strings), or NetcoreError with one line. Docker's rules: at most one
        IPv4 and one IPv6 subnet, an IPv6 subnet needs ``--ipv6``, ``--ip-range`` and ``--gateway`` need the
        subnet they belong to; ``host`` and ``none`` are reserved names."""
        validate_name(self.name, "network")
        if self.name in RESERVED_NETWORKS:
            raise NetcoreError(f"network name {self.name!r} is reserved for the {self.name} network mode")
        subnets = [_network(s, "subnet") for s in self.subnets]
        v4 = [s for s in subnets if s.version == 4]
        v6 = [s for s in subnets if s.version == 6]
        if len(v4) > 1 or len(v6) > 1:
            raise NetcoreError("give at most one IPv4 and one IPv6 --subnet")
        if v6 and not self.ipv6:
            raise NetcoreError(f"subnet {v6[0]} is IPv6: add --ipv6 to enable IPv6 on this network")
        ip_range = None
        if self.ip_range is not None:
            if ":" in self.ip_range:
                raise NetcoreError("--ip-range is supported for the IPv4 subnet only")
            if not v4:
                raise NetcoreError("--ip-range and --gateway need the --subnet they belong to")
            ip_range = str(_network(self.ip_range, "ip-range"))
        gateways = [_address(g, "gateway") for g in self.gateways]
        for version, subnet in ((4, v4), (6, v6)):
            given = [g for g in gateways if ipaddress.ip_address(g).version == version]
            if len(given) > 1:
                raise NetcoreError(f"give at most one IPv{version} --gateway")
            if given and not subnet:
                raise NetcoreError("--ip-range and --gateway need the --subnet they belong to" if version == 4
                                   else "an IPv6 --gateway needs the IPv6 --subnet it belongs to")
        return replace(self, subnets=tuple(str(s) for s in subnets), ip_range=ip_range, gateways=tuple(gateways),
                       dns=tuple(parse_server(s) for s in self.dns),
                       options={str(k): str(v) for k, v in self.options.items()},
                       labels={str(k): str(v) for k, v in self.labels.items()})

    @property
    def subnet4(self) -> str | None:
        return next((s for s in self.subnets if ":" not in s), None)

    @property
    def subnet6(self) -> str | None:
        return next((s for s in self.subnets if ":" in s), None)

    @property
    def gateway4(self) -> str | None:
        return next((g for g in self.gateways if ":" not in g), None)

    @property
    def gateway6(self) -> str | None:
        return next((g for g in self.gateways if ":" in g), None)


@dataclass(frozen=True)
class Attachment(_Plain):
    """A container on one network: ``--net NETWORK`` with its ``--net-alias`` names and a fixed ``--ip``
    (and ``--ip6``), or what ``network connect --alias --ip`` asks."""

    network: str
    aliases: tuple[str, ...] = ()
    ip: str | None = None
    ip6: str | None = None

    def check(self) -> Attachment:
        """Normalised (aliases once each, in order; addresses as ``ipaddress`` prints them), or NetcoreError."""
        for alias in self.aliases:
            validate_name(alias, "alias")
        ip = _address(self.ip, "--ip") if self.ip else None
        if ip and ":" in ip:
            raise NetcoreError(f"invalid --ip {ip}: an IPv4 address (--ip6 takes an IPv6 one)")
        ip6 = _address(self.ip6, "--ip6") if self.ip6 else None
        if ip6 and ":" not in ip6:
            raise NetcoreError(f"invalid --ip6 {ip6}: an IPv6 address")
        return replace(self, aliases=tuple(dict.fromkeys(self.aliases)), ip=ip, ip6=ip6)


@dataclass(frozen=True)
class ContainerSpec(_Plain):
    """``run``: a container with its networks. ``net`` is Docker's ``--net`` mode: ``None`` (the networks
    in ``networks``; none given: the default ``bridge``), ``host``, ``none`` or ``container:NAME``.
    ``publish``: parsed ``-p`` values (netcore.ports.parse_publish); ``dns``: the container's own servers;
    ``labels``: kept and shown by inspect (Compose's project labels among them); ``dns_search``:
    ``--dns-search`` domains (resolv.conf's ``search``); ``extra_hosts``: ``--add-host`` entries
    (``HOST:IP``, in its hosts file); ``command``: its main process's argv, started once it is built
    (``run -d -- CMD``, a Compose service's ``command``), empty for none."""

    name: str | None = None
    networks: tuple[Attachment, ...] = ()
    net: str | None = None
    hostname: str | None = None
    dns: tuple[str, ...] = ()
    publish: tuple[PublishSpec, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    dns_search: tuple[str, ...] = ()
    extra_hosts: tuple[str, ...] = ()
    command: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        """``bridge`` (attached to networks), ``host``, ``none`` or ``container``."""
        if self.net in (MODE_HOST, MODE_NONE):
            return self.net
        if self.net is not None and self.net.startswith("container:"):
            return MODE_CONTAINER
        return MODE_BRIDGE

    @property
    def peer(self) -> str | None:
        """The container named by ``--net container:NAME``."""
        return self.net.partition(":")[2] if self.mode == MODE_CONTAINER else None

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        """The networks to attach, in order: those given, else the default bridge (bridge mode only)."""
        if self.mode != MODE_BRIDGE:
            return ()
        return self.networks or (Attachment(DEFAULT_BRIDGE),)

    @classmethod
    def from_flags(cls, name: str | None = None, net: str | list[str] | tuple[str, ...] | None = None, aliases=(),
                   ip: str | None = None, hostname: str | None = None, dns=(), publish=(),
                   labels: dict | None = None, dns_search=(), extra_hosts=(), command=()) -> ContainerSpec:
        """The spec of Docker's ``run`` flags: ``--net NETWORK|host|none|container:NAME``, given once or, for
        networks, several times (every one attached, in order, as Docker 25 does), with ``--net-alias`` and
        ``--ip`` for the first network (Docker's rule for its legacy flags; they need a network: NetcoreError
        naming the mode otherwise), ``--hostname``, ``--dns``, ``--dns-search``, ``--add-host``, ``-p``
        (parsed: netcore.ports.PublishSpec) and the main process ``command``. Not yet checked."""
        nets = [net] if isinstance(net, str) else list(net or ())
        rest = {"name": name, "hostname": hostname, "dns": tuple(dns), "publish": tuple(publish),
                "labels": dict(labels or {}), "dns_search": tuple(dns_search), "extra_hosts": tuple(extra_hosts),
                "command": tuple(command)}
        modes = [n for n in nets if n in (MODE_HOST, MODE_NONE) or n.startswith("container:")]
        if modes:
            if len(nets) > 1:
                raise NetcoreError(f"conflicting options: --net {modes[0]} cannot be combined with other networks")
            if aliases or ip:
                raise NetcoreError(f"--net-alias and --ip need a bridge network, not --net {modes[0]}")
            return cls(net=modes[0], **rest)
        networks = tuple(Attachment(n, tuple(aliases), ip) if i == 0 else Attachment(n) for i, n in enumerate(nets))
        if not nets and (aliases or ip):
            networks = (Attachment(DEFAULT_BRIDGE, tuple(aliases), ip),)
        return cls(networks=networks, **rest)

    def check(self) -> ContainerSpec:
        """Normalised, or NetcoreError with one line: names, aliases, hostname and servers valid; Docker's
        refusals: ``--net-alias``/``--ip`` and ``-p`` need networks (not host, none, container:), a network
        given twice, ``--net`` both as a mode and with networks."""
        if self.name is not None:
            validate_name(self.name, "container")
        if self.hostname is not None:
            validate_name(self.hostname, "hostname")
        if self.net is not None and self.net not in (MODE_HOST, MODE_NONE) and self.mode != MODE_CONTAINER:
            raise NetcoreError(f"--net {self.net!r} is a network: give it in networks")
        if self.mode == MODE_CONTAINER and not self.peer:
            raise NetcoreError("--net container:NAME needs the name or ID of a container")
        networks = tuple(a.check() for a in self.networks)
        if self.mode != MODE_BRIDGE and networks:
            raise NetcoreError(f"--net {self.net} cannot be combined with networks")
        seen = set()
        for attachment in networks:
            if attachment.network in seen:
                raise NetcoreError(f"network {attachment.network} is given twice")
            seen.add(attachment.network)
        if self.mode != MODE_BRIDGE and self.publish:
            raise NetcoreError(f"-p needs a bridge network, not --net {self.net}: "
                               + ("the container uses the host's ports directly" if self.mode == MODE_HOST else
                                  "its ports are published by the container whose namespace it shares"
                                  if self.mode == MODE_CONTAINER else "it has no network to publish from"))
        if any(not isinstance(word, str) for word in self.command) or (self.command and not self.command[0]):
            raise NetcoreError("the command must be words, the first of them not empty")
        return replace(self, networks=networks, dns=tuple(parse_server(s) for s in self.dns),
                       labels={str(k): str(v) for k, v in self.labels.items()},
                       dns_search=tuple(dict.fromkeys(parse_search_domain(d) for d in self.dns_search)),
                       extra_hosts=tuple(parse_extra_host(h) for h in self.extra_hosts), command=tuple(self.command))

    @classmethod
    def _decode(cls, data: dict) -> ContainerSpec:
        data["networks"] = tuple(Attachment.from_dict(a) for a in data.get("networks", ()))
        data["publish"] = tuple(PublishSpec(p["host_ip"], tuple(p["host_ports"]) if p["host_ports"] else None,
                                            tuple(p["container_ports"]), p["protocol"])
                                for p in data.get("publish", ()))
        for key in ("dns", "dns_search", "extra_hosts", "command"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)


@dataclass(frozen=True)
class ConnectSpec(_Plain):
    """``network connect [--alias A]... [--ip IP] NETWORK CONTAINER``."""

    container: str
    attachment: Attachment

    def check(self) -> ConnectSpec:
        return replace(self, attachment=self.attachment.check())

    @classmethod
    def _decode(cls, data: dict) -> ConnectSpec:
        return cls(str(data["container"]), Attachment.from_dict(data["attachment"]))
