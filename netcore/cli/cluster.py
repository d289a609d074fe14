"""``netcore cluster join/ls/leave``: this host in a cluster on etcd (issue 27), run by the agent
(netcore.agent.server) like netcore.cli.commands' handlers. The member itself lives in netcored's engine
(netcore.engine.overlay, netcore.engine.cluster)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TextIO

from netcore.cli import views
from netcore.engine import Engine
from netcore.errors import NetcoreError


def cluster_join(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``cluster join --store etcd://... --advertise-address ADDR [--name N] [--lease-ttl S]``: one line saying
    what this host now is in which cluster."""
    membership, version = engine.join_cluster(args.store, args.advertise_address, args.name, args.lease_ttl)
    print(f"joined {membership.store} (etcd {version}) as {membership.name} ({membership.address}), "
          f"lease {membership.lease_ttl} s", file=out)
    return 0


def cluster_ls(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``cluster ls``: every host of the cluster (NAME, ADDRESS, STATE, CONTAINERS on overlay networks), this
    one marked ``*``; a store that does not answer is a warning and the hosts as last seen."""
    status = engine.cluster_status()
    if status is None:
        raise NetcoreError("this host has not joined a cluster "
                           "(netcore cluster join --store etcd://HOST:PORT --advertise-address ADDRESS)")
    rows = []
    for name, host in sorted(status.hosts.items()):
        rows.append([f"{name} *" if name == status.name else name, host.address, "ready",
                     str(status.containers_of(name))])
    if status.name not in status.hosts:
        state = "registering" if status.last_error is None else "unregistered"
        membership = engine.overlays.service.membership
        rows.append([f"{status.name} *", membership.address, state, str(status.containers_of(status.name))])
    print(views.table(["NAME", "ADDRESS", "STATE", "CONTAINERS"], rows), file=out)
    if status.last_error or not status.connected:
        engine.warnings.append(f"{status.last_error or 'the cluster store does not answer'}: the hosts as this host "
                               "last saw them")
    engine.warnings.extend(status.warnings[-5:])
    return 0


def cluster_leave(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    membership = engine.leave_cluster(args.force)
    print(f"left {membership.store}", file=out)
    return 0


HANDLERS: dict[str, Callable[[Engine, argparse.Namespace, TextIO], int | dict]] = {
    "cluster join": cluster_join, "cluster ls": cluster_ls, "cluster leave": cluster_leave,
}
READ_ONLY: frozenset[str] = frozenset()
