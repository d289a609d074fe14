"""What each command does, run by the agent (netcore.agent.server): one handler per subcommand.

A handler gets the engine, the command's parsed arguments (netcore.cli.parser, as the request carried them)
and the stream its output goes to; it calls the engine and prints. It returns the exit status, or a dict
with ``exit`` and what the client does next (``exec``: run a command inside a container's namespace, which
the client does itself, in its own terminal). A NetcoreError is one line for the user.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TextIO

from netcore import network as drivers, ports, topology
from netcore.cli import views
from netcore.dnsd_protocol.control import dnsd_options
from netcore.engine import Engine
from netcore.errors import NetcoreError, NotFound
from netcore.model import DEFAULT_BRIDGE, STATE_RUNNING
from netcore.requests import Attachment, ConnectSpec, ContainerSpec, NetworkSpec


def _command(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def _exec(engine: Engine, ref: str, argv: list[str]) -> dict:
    """What the client needs to run ``argv`` inside container ``ref``: its namespace (NetcoreError when it is
    not running). dnsd is revived first, so the command's lookups are answered."""
    if not argv:
        raise NetcoreError("no command given: use -- CMD [ARG...]")
    return {"exit": 0, "exec": {"netns": engine.exec_target(ref), "argv": argv}}


# -- one handler per subcommand: (engine, parsed arguments, output stream) -> exit status ----------------------


def network_create(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    network = engine.create_network(NetworkSpec(
        args.name, args.driver, tuple(args.subnet), args.ip_range, (args.gateway,) if args.gateway else (),
        args.internal, args.ipv6, tuple(args.dns), dict(args.opt), dict(args.label)))
    print(network.id, file=out)
    return 0


def network_ls(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    rows = [[n.id[:12], n.name, n.driver, drivers.scope(n.driver)] for n in engine.networks_to_show()]
    print(views.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows), file=out)
    return 0


def network_inspect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    store = engine.store
    networks = [engine.network_to_show(ref) for ref in args.names]
    down = engine.dnsd.listeners_down() if any(n.dns_enabled for n in networks) else {}
    documents = []
    for network in networks:
        attached = [(store.container(e.container_id), e) for e in store.endpoints_on_network(network.id)]
        built = store.find_network(network.name) is not None or network.name == DEFAULT_BRIDGE
        documents.append(views.network_document(network, attached, down, drivers.scope(network.driver),
                                                engine.network_peers(network), built))
    print(json.dumps(documents, indent=4), file=out)
    return 0


def network_rm(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for ref in args.names:
        engine.remove_network(ref)
        print(ref, file=out)
    return 0


def network_connect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    engine.connect(ConnectSpec(args.container, Attachment(args.network, tuple(args.alias), args.ip)))
    return 0


def network_disconnect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    engine.disconnect(args.network, args.container)
    return 0


def run(engine: Engine, args: argparse.Namespace, out: TextIO) -> int | dict:
    publish = [ports.parse_publish(text) for text in args.publish]  # checked by the client's parser already
    container = engine.run(ContainerSpec.from_flags(args.name, args.net, args.aliases, args.ip, args.hostname,
                                                    args.dns, publish))
    command = _command(args.cmd)
    if command:
        return _exec(engine, container.id, command)
    print(container.id, file=out)
    return 0


def exec_(engine: Engine, args: argparse.Namespace, out: TextIO) -> dict:
    return _exec(engine, args.container, _command(args.cmd))


def rm(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for container in engine.remove_containers(args.names, args.force):
        print(container.name, file=out)
    return 0


def ps(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    store = engine.store
    containers = store.containers()
    if args.quiet:
        for c in containers:
            print(c.id[:12], file=out)
        return 0
    networks = {n.id: n for n in store.networks()}
    interrupted = any(c.state != STATE_RUNNING for c in containers) and not engine.action_in_progress()
    rows = []
    for c in containers:
        endpoints = store.endpoints_of_container(c.id)
        nets = ",".join(networks[e.network_id].name for e in endpoints) or c.mode
        addresses = ",".join(e.ipv4 for e in endpoints if e.ipv4)
        published = views.ports_column(store.ports_of_container(c.id), _published_ipv6(endpoints, networks))
        rows.append([c.id[:12], c.name, views.status(c, interrupted), nets, addresses, published])
    print(views.table(["CONTAINER ID", "NAME", "STATUS", "NETWORKS", "IP ADDRESSES", "PORTS"], rows), file=out)
    return 0


def _published_ipv6(endpoints, networks) -> bool:
    """Whether a container's ports are published over IPv6 too: its target network has IPv6."""
    target = ports.target_endpoint(endpoints, networks)
    return target is not None and target.ipv6 is not None


def inspect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    store = engine.store
    documents = []
    for ref in args.names:
        container = store.container(ref)
        attached = [(store.network(e.network_id), e) for e in store.endpoints_of_container(container.id)]
        peer = store.container(container.peer) if container.peer else None
        networks = {n.id: n for n, _ in attached}
        published = (store.ports_of_container(container.id),
                     _published_ipv6([e for _, e in attached], networks))
        documents.append(views.container_document(container, attached, peer, published))
    print(json.dumps(documents, indent=4), file=out)
    return 0


def port(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """Docker's `port`: every published port as ``80/tcp -> 0.0.0.0:8080``, or with PORT[/PROTO] the host
    addresses of that one (NotFound, exit 1, when it is not published)."""
    store = engine.store
    container = store.container(args.container)
    endpoints = store.endpoints_of_container(container.id)
    bindings = store.ports_of_container(container.id)
    ipv6 = _published_ipv6(endpoints, {n.id: n for n in store.networks()})
    if args.port is None:
        for line in ports.port_lines(bindings, ipv6):
            print(line, file=out)
        return 0
    number, protocol = args.port
    chosen = [b for b in bindings if (b.container_port, b.protocol) == (number, protocol)]
    if not chosen:
        raise NotFound(f"no public port '{ports.port_key(protocol, number)}' published for {container.name}")
    for line in ports.port_lines(chosen, ipv6):
        print(line.partition(" -> ")[2], file=out)
    return 0


def up(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for line in topology.up(engine, topology.load(args.file)):
        print(line, file=out)
    return 0


def down(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for line in topology.down(engine, topology.load(args.file)):
        print(line, file=out)
    return 0


def purge(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    engine.purge()
    return 0


def firewall_reload(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    engine.reload_firewall()
    return 0


def dns_options(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``netcore dns-options [show]``: the options of the dnsd netcore starts, one line (empty: none);
    ``set -- WORDS``: replace them and restart dnsd with them (the old ones kept if dnsd refuses the new, one
    line, exit 1); ``reset``: none."""
    words = _command(args.words)
    if args.action == "show":
        if words:
            raise NetcoreError("dns-options show takes no options: use dns-options set -- OPTION...", exit_code=2)
        print(" ".join(dnsd_options(engine.state_dir)), file=out)
        return 0
    if args.action == "set" and not words:
        raise NetcoreError("dns-options set needs the options: dns-options set -- OPTION... (reset: none)",
                           exit_code=2)
    if args.action == "reset" and words:
        raise NetcoreError("dns-options reset takes no options", exit_code=2)
    print(" ".join(engine.set_dnsd_options(words if args.action == "set" else [])), file=out)
    return 0


def host_dns(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    resolver = engine.host_resolver
    resolver.check_host_mode()  # before the action, which would make a gateway namespace
    with engine.action():
        line = resolver.turn_on(engine.store.networks()) if args.state == "on" else resolver.turn_off()
    print(line, file=out)
    return 0


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
    "network create": network_create, "network ls": network_ls, "network inspect": network_inspect,
    "network rm": network_rm, "network connect": network_connect, "network disconnect": network_disconnect,
    "run": run, "exec": exec_, "rm": rm, "ps": ps, "inspect": inspect, "port": port, "up": up, "down": down,
    "purge": purge,
    "firewall-reload": firewall_reload, "host-dns": host_dns, "dns-options": dns_options,
    "cluster join": cluster_join, "cluster ls": cluster_ls, "cluster leave": cluster_leave,
}
READ_ONLY = frozenset({"network ls", "network inspect", "ps", "inspect", "port", "exec"})  # they re-assert the firewall
