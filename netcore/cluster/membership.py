"""A state dir's membership of a cluster: ``STATE_DIR/cluster.json``, written by ``netcore cluster join``.

The one home of what this host is in its cluster: the store's endpoints (all of them, for failover), this
host's name, its underlay address (Docker's ``--advertise-addr``), its host ID (random hex: a restarted host
recognises its own keys under its name) and its lease's TTL. A state dir without the file never joined a
cluster and never loads the cluster's code. The file is JSON, root's, mode 0600, replaced whole.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from dataclasses import asdict, dataclass

from netcore.cluster.store import format_store_url, parse_store_url
from netcore.errors import NetcoreError
from netcore.model import NAME_MAX, NAME_RE
from netcore.system.files import write_atomically

FILE_NAME = "cluster.json"
DEFAULT_LEASE_TTL = 15  # seconds (issue 27, item 6)
MIN_LEASE_TTL = 2  # etcd's own floor with its default timers (1.5 s, rounded up)
MAX_LEASE_TTL = 3600


@dataclass(frozen=True)
class Membership:
    """``store``: the store URL (``etcd://HOST:PORT,...``); ``name``: this host's name in the cluster (Docker's
    name rule); ``address``: its underlay address (IPv4), where other hosts send VXLAN; ``host_id``: hex;
    ``lease_ttl``: seconds; ``joined``: ISO 8601 time of the join."""

    store: str
    name: str
    address: str
    host_id: str
    lease_ttl: int = DEFAULT_LEASE_TTL
    joined: str = ""

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return parse_store_url(self.store)

    def check(self) -> Membership:
        """This membership normalised (the URL as netcore prints it, the address as ``ipaddress`` does), or
        NetcoreError, one line: a store URL that is not ``etcd://``, a bad name, an address that is not IPv4,
        a TTL out of 2 to 3600 seconds."""
        store = format_store_url(parse_store_url(self.store))
        if not self.name or len(self.name) > NAME_MAX or not NAME_RE.match(self.name):
            raise NetcoreError(f"invalid host name {self.name!r}: use up to {NAME_MAX} of [a-zA-Z0-9_.-], starting "
                               "with a letter or digit (--name)")
        try:
            address = ipaddress.ip_address(self.address)
        except ValueError:
            raise NetcoreError(f"invalid advertise address {self.address!r}: not an IP address") from None
        if address.version != 4:
            raise NetcoreError(f"invalid advertise address {self.address}: the underlay is IPv4")
        if not isinstance(self.lease_ttl, int) or not MIN_LEASE_TTL <= self.lease_ttl <= MAX_LEASE_TTL:
            raise NetcoreError(f"invalid lease TTL {self.lease_ttl!r}: {MIN_LEASE_TTL} to {MAX_LEASE_TTL} seconds")
        return Membership(store, self.name, str(address), self.host_id, self.lease_ttl, self.joined)


def path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE_NAME)


def read(state_dir: str) -> Membership | None:
    """The state dir's membership, None if it never joined (or left). NetcoreError naming the file if it
    cannot be read."""
    try:
        with open(path(state_dir)) as f:
            raw = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise NetcoreError(f"cannot read the cluster membership {path(state_dir)}: {err}") from None
    try:
        return Membership(**{k: raw[k] for k in ("store", "name", "address", "host_id")},
                          lease_ttl=raw.get("lease_ttl", DEFAULT_LEASE_TTL), joined=raw.get("joined", "")).check()
    except (KeyError, TypeError, NetcoreError) as err:
        raise NetcoreError(f"cannot read the cluster membership {path(state_dir)}: {err}") from None


def write(state_dir: str, membership: Membership) -> None:
    """Write the membership whole (a temporary file renamed over it), mode 0600, synced: the host's word that
    it joined a cluster must survive a power cut."""
    write_atomically(path(state_dir), json.dumps(asdict(membership), indent=2, sort_keys=True) + "\n", 0o600,
                     durable=True)


def remove(state_dir: str) -> None:
    """Forget the membership (``cluster leave``, ``purge``); no error if there is none."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path(state_dir))
