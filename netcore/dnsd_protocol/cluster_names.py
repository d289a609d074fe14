"""Other hosts' containers, as netcored hands them to dnsd: ``STATE_DIR/cluster-names.json`` (issue 27).

dnsd runs inside the gateway namespace and cannot reach etcd, which listens where netcored runs (the root
namespace's loopback in sandbox mode); and it must never read a store per query. So netcored's cluster member
(netcore.cluster.member), fed by one watch, writes the containers of every other host on overlay networks
into this file, after programming the data plane, and tells dnsd to ``sync``; dnsd's cluster record source
(dnsd/sources/cluster.py) serves them beside the local store's containers. The file survives netcored and
the store: a dnsd restarted while either is down keeps answering the last names it knew.

The format (JSON, written whole: a temporary file renamed over it)::

    {"v": 1, "generation": 7, "containers": [
        {"id": HEX64, "name": "web", "hostname": "web", "host": "h2",
         "endpoints": [{"id": HEX64, "network_id": HEX64, "ipv4": "10.0.0.2", "mac": "02:42:0a:00:00:02",
                        "aliases": ["api"]}]}]}

``generation`` grows with every write. A reader takes what it can: an unreadable file is an error (the
reader keeps what it had), a malformed entry is left out.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable

from netcore.model import Attached, Container, Endpoint
from netcore.system.files import write_atomically

FILE_NAME = "cluster-names.json"
FORMAT = 1


class NamesError(ValueError):
    """The file cannot be read as a whole (not JSON, another format): the reader keeps its last names."""


def path(state_dir: str) -> str:
    return os.path.join(state_dir, FILE_NAME)


def encode(generation: int, containers: Iterable[tuple[Container, list[Endpoint], str]]) -> bytes:
    """The file's bytes: each (container, its endpoints, its host's name)."""
    document = {"v": FORMAT, "generation": generation, "containers": [
        {"id": c.id, "name": c.name, "hostname": c.hostname, "host": host,
         "endpoints": [{"id": e.id, "network_id": e.network_id, "ipv4": e.ipv4, "mac": e.mac,
                        "aliases": list(e.aliases)} for e in endpoints]}
        for c, endpoints, host in containers]}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def write(state_dir: str, generation: int, containers: Iterable[tuple[Container, list[Endpoint], str]]) -> None:
    """Replace the file whole (mode 0600; not synced: netcored writes it anew from its watch)."""
    write_atomically(path(state_dir), encode(generation, containers), 0o600)


def remove(state_dir: str) -> None:
    """No other host's names any more (``cluster leave``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path(state_dir))


def decode(data: bytes) -> tuple[int, list[Attached]]:
    """(generation, each container with its endpoints) of the file's bytes. An endpoint's ``ifname`` is
    ``ethN`` in the order given, ``host_ifname`` empty (nothing of it is on this host); a malformed
    container or endpoint is left out. NamesError if the whole cannot be read."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise NamesError(f"not JSON: {err}") from None
    if (not isinstance(document, dict) or document.get("v") != FORMAT
            or not isinstance(document.get("containers"), list)):
        raise NamesError(f"not a names file of format {FORMAT}")
    generation = document.get("generation")
    attached: list[Attached] = []
    for item in document["containers"]:
        try:
            container = Container(id=str(item["id"]), name=str(item["name"]), hostname=str(item.get("hostname", "")),
                                  netns="")
            endpoints = [Endpoint(id=str(e["id"]), container_id=container.id, network_id=str(e["network_id"]),
                                  ifname=f"eth{n}", host_ifname="", mac=str(e.get("mac", "")), ipv4=str(e["ipv4"]),
                                  aliases=tuple(str(a) for a in e.get("aliases", ())))
                         for n, e in enumerate(item["endpoints"])]
        except (KeyError, TypeError, AttributeError):
            continue
        attached.append((container, endpoints))
    return generation if isinstance(generation, int) else 0, attached


def read(state_dir: str) -> tuple[int, list[Attached]] | None:
    """The file's (generation, containers); None if there is none. NamesError/OSError if it cannot be read."""
    try:
        with open(path(state_dir), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return decode(data)
