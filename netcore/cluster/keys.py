"""The cluster's key layout in etcd and the encoding of its values. Pure: no I/O.

Every key lives under one versioned prefix, ``/netcore/v1/`` (a release that
changes the layout incompatibly moves to ``/netcore/v2/`` and both can run
side by side while hosts upgrade). docs/cluster.md documents
the layout for other tools; this module is its one home in code.

====================================================  ============  =========================
key                                                   value         lifetime
====================================================  ============  =========================
``/netcore/v1/hosts/HOST``                            HostRecord    leased by HOST
``/netcore/v1/networks/NETWORK_ID``                   NetworkRecord global (no lease)
``/netcore/v1/endpoints/NETWORK_ID/ENDPOINT_ID``      EndpointRecord leased by its host
``/netcore/v1/alloc/addresses/NETWORK_ID/IP``         Claim         leased by the endpoint's host
``/netcore/v1/alloc/vnis/VNI``                        Claim         global, with its network
``/netcore/v1/alloc/subnets/ADDRESS-PREFIXLEN``       Claim         global, with its network
``/netcore/v1/alloc/names/NAME/global``               Claim         global, with its network
``/netcore/v1/alloc/names/NAME/local/HOST``           Claim         leased by HOST
====================================================  ============  =========================

Values are JSON objects (UTF-8, keys sorted, no spaces) with ``"v": 1``, the
format version. A reader ignores fields it does not know (a newer release may
add some) and says which (``Decoded.unknown``); a value it cannot read (not
JSON, no ``v``, a missing or mistyped field) raises ``RecordError``, which
readers turn into a warning and skip: a key never crashes a reader.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import types
import typing
from dataclasses import dataclass, field

from netcore.model import NAME_MAX, NAME_RE

PREFIX = "/netcore/v1/"
HOSTS = PREFIX + "hosts/"
NETWORKS = PREFIX + "networks/"
ENDPOINTS = PREFIX + "endpoints/"
ALLOC = PREFIX + "alloc/"
ADDRESSES = ALLOC + "addresses/"
VNIS = ALLOC + "vnis/"
SUBNETS = ALLOC + "subnets/"
NAMES = ALLOC + "names/"

FORMAT_VERSION = 1

_HEX_ID = re.compile(r"^[0-9a-f]{1,64}$")

KIND_HOST = "host"
KIND_NETWORK = "network"
KIND_ENDPOINT = "endpoint"
KIND_ADDRESS = "address"
KIND_VNI = "vni"
KIND_SUBNET = "subnet"
KIND_GLOBAL_NAME = "global-name"
KIND_LOCAL_NAME = "local-name"


class RecordError(ValueError):
    """A key or value netcore cannot read: the message says which key and why (readers warn and skip it)."""


# -- records -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostRecord:
    """A joined host, at ``hosts/NAME``, leased by the host itself (it vanishes when the host stops refreshing).

    ``address``: the underlay address (Docker's ``--advertise-addr``), the VTEP other hosts send VXLAN to.
    ``host_id``: random hex kept in the host's state dir, telling a restarted host's own keys from a
    namesake's. ``local_subnets``: CIDRs of this host's local networks, so no overlay subnet overlaps them.
    ``lease_ttl``: seconds. ``joined``: ISO 8601 time of the join."""

    name: str
    address: str
    host_id: str
    local_subnets: tuple[str, ...] = ()
    lease_ttl: int = 15
    joined: str = ""


@dataclass(frozen=True)
class NetworkRecord:
    """An overlay network (scope ``global``), at ``networks/ID``, no lease: it lives until `network rm`.

    ``vni``: the VXLAN ID (4096 and up, Docker's overlay range). ``gateway``: the same address on every host
    (as Docker swarm does). ``options``/``labels``: as given at create (Docker's names, e.g.
    ``com.docker.network.driver.mtu``). ``created_by``: the host that created it."""

    id: str
    name: str
    subnet: str
    gateway: str
    vni: int
    internal: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    created_by: str = ""


@dataclass(frozen=True)
class EndpointRecord:
    """A container's interface on an overlay network, at ``endpoints/NETWORK_ID/ID``, leased by ``host``.

    What other hosts need to reach it (``ipv4``, ``mac``, and ``host`` whose record gives the VTEP) and to
    answer its names (``container_name``, ``hostname``, ``aliases``, the container's ID)."""

    id: str
    network_id: str
    host: str
    container_id: str
    container_name: str
    hostname: str
    ipv4: str
    mac: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    """The value of an allocation key: who holds it. ``owner``: the network ID (VNI, subnet, global name),
    the endpoint ID (address) or the host name (local name); ``host``: the host that made the claim."""

    owner: str
    host: str = ""


Record = HostRecord | NetworkRecord | EndpointRecord | Claim


@dataclass(frozen=True)
class Decoded:
    """A value read back: the record, and the field names it carried that this release does not know."""

    record: Record
    unknown: tuple[str, ...] = ()
    version: int = FORMAT_VERSION


# -- keys ----------------------------------------------------------------------------------------------------


def _name(text: str, what: str) -> str:
    if not (NAME_RE.match(text) and len(text) <= NAME_MAX):
        raise RecordError(f"bad {what} {text!r}: expected letters, digits, '_', '.', '-' (at most {NAME_MAX})")
    return text


def _hex(text: str, what: str) -> str:
    if not _HEX_ID.match(text):
        raise RecordError(f"bad {what} {text!r}: expected lowercase hex")
    return text


def host_key(host: str) -> str:
    return HOSTS + _name(host, "host name")


def network_key(network_id: str) -> str:
    return NETWORKS + _hex(network_id, "network ID")


def endpoints_prefix(network_id: str) -> str:
    """The prefix of every endpoint of one network (``network rm`` refuses while a key is under it)."""
    return ENDPOINTS + _hex(network_id, "network ID") + "/"


def endpoint_key(network_id: str, endpoint_id: str) -> str:
    return endpoints_prefix(network_id) + _hex(endpoint_id, "endpoint ID")


def addresses_prefix(network_id: str) -> str:
    return ADDRESSES + _hex(network_id, "network ID") + "/"


def address_key(network_id: str, address: str) -> str:
    try:
        canonical = str(ipaddress.ip_address(address))
    except ValueError:
        raise RecordError(f"bad address {address!r}") from None
    return addresses_prefix(network_id) + canonical


def vni_key(vni: int) -> str:
    return VNIS + str(int(vni))


def subnet_key(subnet: str) -> str:
    """``10.0.3.0/24`` -> ``.../alloc/subnets/10.0.3.0-24`` (flannel's spelling: no ``/`` inside a component)."""
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError:
        raise RecordError(f"bad subnet {subnet!r}") from None
    return f"{SUBNETS}{net.network_address}-{net.prefixlen}"


def name_prefix(name: str) -> str:
    """Every claim of one network name, global and local: a global create needs this whole prefix empty."""
    return NAMES + _name(name, "network name") + "/"


def global_name_key(name: str) -> str:
    return name_prefix(name) + "global"


def local_name_key(name: str, host: str) -> str:
    return name_prefix(name) + "local/" + _name(host, "host name")


@dataclass(frozen=True)
class KeyRef:
    """What a key names: ``kind`` (a ``KIND_*``), and its parts (e.g. network ID and endpoint ID)."""

    kind: str
    parts: tuple[str, ...]


def parse_key(key: str) -> KeyRef:
    """The kind and parts of a key under ``PREFIX``; RecordError for a key this release does not know."""
    if not key.startswith(PREFIX):
        raise RecordError(f"key {key!r} is not under {PREFIX}")
    parts = key[len(PREFIX):].split("/")
    match parts:
        case ["hosts", host]:
            return KeyRef(KIND_HOST, (_name(host, "host name"),))
        case ["networks", network_id]:
            return KeyRef(KIND_NETWORK, (_hex(network_id, "network ID"),))
        case ["endpoints", network_id, endpoint_id]:
            return KeyRef(KIND_ENDPOINT, (_hex(network_id, "network ID"), _hex(endpoint_id, "endpoint ID")))
        case ["alloc", "addresses", network_id, address]:
            return KeyRef(KIND_ADDRESS, (_hex(network_id, "network ID"), address))
        case ["alloc", "vnis", vni] if vni.isdigit():
            return KeyRef(KIND_VNI, (vni,))
        case ["alloc", "subnets", subnet]:
            return KeyRef(KIND_SUBNET, (subnet.replace("-", "/", 1),))
        case ["alloc", "names", name, "global"]:
            return KeyRef(KIND_GLOBAL_NAME, (_name(name, "network name"),))
        case ["alloc", "names", name, "local", host]:
            return KeyRef(KIND_LOCAL_NAME, (_name(name, "network name"), _name(host, "host name")))
    raise RecordError(f"unknown key {key!r}")


RECORD_OF_KIND: dict[str, type] = {
    KIND_HOST: HostRecord, KIND_NETWORK: NetworkRecord, KIND_ENDPOINT: EndpointRecord,
    KIND_ADDRESS: Claim, KIND_VNI: Claim, KIND_SUBNET: Claim, KIND_GLOBAL_NAME: Claim, KIND_LOCAL_NAME: Claim,
}


# -- values --------------------------------------------------------------------------------------------------


def encode(record: Record) -> bytes:
    """The stored bytes of a record: JSON, keys sorted, no spaces, ``"v": FORMAT_VERSION`` first in meaning.

    Deterministic (the same record gives the same bytes), so a transaction can compare a stored value
    with what this host would write (an idempotent retry recognizes its own earlier write)."""
    fields = dataclasses.asdict(record)
    for name, value in fields.items():
        if isinstance(value, tuple):
            fields[name] = list(value)
    fields["v"] = FORMAT_VERSION
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes, cls: type, where: str = "value") -> Decoded:
    """Read ``data`` as a ``cls`` record (HostRecord, NetworkRecord, EndpointRecord or Claim).

    Unknown fields (a newer release's) are left out and named in ``Decoded.unknown``; a ``v`` higher than
    FORMAT_VERSION is read the same way. RecordError (naming ``where``, e.g. the key) if the bytes are not
    a JSON object, have no integer ``v``, lack a field without default, or hold a field of the wrong type.
    """
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RecordError(f"{where}: not JSON") from None
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: not a JSON object")
    version = raw.pop("v", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"{where}: no format version 'v'")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for name, spec in known.items():
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}: field {name!r} is missing")
            continue
        values[name] = _checked(raw[name], hints[name], f"{where}: field {name!r}")
    unknown = tuple(sorted(set(raw) - set(known)))
    return Decoded(cls(**values), unknown, version)


def _checked(value, hint, where: str):
    """``value`` as type ``hint`` (str, int, bool, X | None, tuple[str, ...], dict[str, str]); RecordError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _checked(value, inner, where)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise RecordError(f"{where}: expected a list of strings")
        return tuple(value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise RecordError(f"{where}: expected an object of strings")
        return dict(value)
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecordError(f"{where}: expected an integer")
    if hint is not int and not isinstance(value, hint):
        raise RecordError(f"{where}: expected {hint.__name__}")
    return value


def decode_key(key: str, data: bytes) -> tuple[KeyRef, Decoded]:
    """Parse a key and decode its value as the record its kind holds; RecordError for either."""
    ref = parse_key(key)
    return ref, decode(data, RECORD_OF_KIND[ref.kind], key)
