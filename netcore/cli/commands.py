"""What each command does, run by the agent (netcore.agent.server): one handler per subcommand.

A handler gets the engine, the command's parsed arguments (netcore.cli.parser, as the request carried them)
and the stream its output goes to; it calls the engine and prints. It returns the exit status, or a dict
with ``exit`` and what the client does next (``exec``: run a command inside a container's namespace, which
the client does itself, in its own terminal). A NetcoreError is one line for the user.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import time
from collections.abc import Callable
from typing import TextIO

from netcore import network as drivers, ports
from netcore.cli import formatting, views
from netcore.dnsd_protocol.control import dnsd_options
from netcore.engine import Engine
from netcore.errors import Conflict, NetcoreError, NotFound
from netcore.model import DEFAULT_BRIDGE, PROCESS_CREATED, PROCESS_EXITED, STATE_RUNNING, Container, Network
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


NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {"ID": "NETWORK ID"}


def network_row(network: Network, full_id: bool = False) -> dict:
    """A network as ``network ls --format`` sees it (Docker's fields)."""
    return {"ID": network.id if full_id else network.id[:12], "Name": network.name, "Driver": network.driver,
            "Scope": drivers.scope(network.driver), "IPv6": str(network.enable_ipv6).lower(),
            "Internal": str(network.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(network.labels.items())),
            "CreatedAt": network.created}


def _network_documents(engine: Engine, networks: list[Network], down: dict | None = None) -> list[dict]:
    store = engine.store
    documents = []
    for network in networks:
        attached = [(store.container(e.container_id), e) for e in store.endpoints_on_network(network.id)]
        built = store.find_network(network.name) is not None or network.name == DEFAULT_BRIDGE
        documents.append(views.network_document(network, attached, down, drivers.scope(network.driver),
                                                engine.network_peers(network), built))
    return documents


def network_ls(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``network ls [-q] [--no-trunc] [--filter K=V]... [--format F]``."""
    filters = formatting.parse_filters(getattr(args, "filter", None) or (), formatting.NETWORK_FILTERS)
    networks = engine.networks_to_show()
    if filters:
        documents = _network_documents(engine, networks)
        networks = [n for n, d in zip(networks, documents, strict=True) if formatting.matches(d, filters)]
    rows = [network_row(n, getattr(args, "no_trunc", False)) for n in networks]
    if getattr(args, "quiet", False):
        text = "\n".join(row["ID"] for row in rows)
    else:
        text = formatting.render(getattr(args, "format", None), rows, NETWORK_TABLE, NETWORK_HEADERS)
    if text:
        print(text, file=out)
    return 0


def network_inspect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    networks = [engine.network_to_show(ref) for ref in args.names]
    down = engine.dnsd.listeners_down() if any(n.dns_enabled for n in networks) else {}
    _print_documents(_network_documents(engine, networks, down), getattr(args, "format", None), out)
    return 0


def _print_documents(documents: list[dict], fmt: str | None, out: TextIO) -> None:
    """inspect's output: the JSON array (no format), or each document by ``--format``/``-f``."""
    if fmt is None:
        print(json.dumps(documents, indent=4), file=out)
    else:
        print(formatting.render(fmt, documents, "json"), file=out)


def network_prune(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``network prune [-f]``: remove every local network no container is attached to (not the default bridge,
    nor an overlay network built here: it is the cluster's), as Docker's; the client asked for confirmation
    already unless ``-f``. Prints Docker's list."""
    removed = []
    for network in engine.store.networks():
        if network.name == DEFAULT_BRIDGE or engine.store.endpoints_on_network(network.id):
            continue
        if drivers.scope(network.driver) != "local":
            continue  # an overlay network is the cluster's, used or not by other hosts: network rm removes it
        try:
            engine.remove_network(network.id)
        except Conflict:
            continue  # a container joined it meanwhile
        removed.append(network.name)
    if removed:
        print("Deleted Networks:\n" + "\n".join(removed), file=out)
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
    """``run``; with ``-d -- CMD`` CMD is the container's main process (started, kept by netcored); without
    ``-d`` CMD runs in the client's terminal as ``exec`` runs it."""
    publish = [ports.parse_publish(text) for text in args.publish]  # checked by the client's parser already
    command = _command(args.cmd)
    detached = bool(args.detach and command)
    container = engine.run(ContainerSpec.from_flags(
        args.name, args.net, args.aliases, args.ip, args.hostname, args.dns, publish,
        dns_search=getattr(args, "dns_search", ()), extra_hosts=getattr(args, "add_host", ()),
        command=command if detached else ()))
    if command and not detached:
        return _exec(engine, container.id, command)
    print(container.id, file=out)
    return 0


def exec_(engine: Engine, args: argparse.Namespace, out: TextIO) -> dict:
    return _exec(engine, args.container, _command(args.cmd))


def rm(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for container in engine.remove_containers(args.names, args.force):
        print(container.name, file=out)
    return 0


PS_TABLE = "table {{.ID}}\t{{.Names}}\t{{.Status}}\t{{.Networks}}\t{{.IPAddresses}}\t{{.Ports}}"
PS_HEADERS = {"ID": "CONTAINER ID", "Names": "NAME", "IPAddresses": "IP ADDRESSES"}


def container_document(engine: Engine, container: Container) -> dict:
    """The inspect document of ``container`` (netcore.cli.views.container_document), main process included."""
    store = engine.store
    attached = [(store.network(e.network_id), e) for e in store.endpoints_of_container(container.id)]
    peer = store.find_container_by_id(container.peer) if container.peer else None
    networks = {n.id: n for n, _ in attached}
    published = (store.ports_of_container(container.id), _published_ipv6([e for _, e in attached], networks))
    return views.container_document(container, attached, peer, published, store.process(container.id),
                                    engine.processes.log_path(container.id))


def ps_row(engine: Engine, container: Container, interrupted: bool, now: str, networks: dict,
           full: bool = False) -> dict:
    """A container as ``ps --format`` sees it (Docker's fields, with IPAddresses)."""
    store = engine.store
    endpoints = store.endpoints_of_container(container.id)
    process = store.process(container.id)
    return {
        "ID": container.id if full else container.id[:12], "Names": container.name, "Image": "",
        "Command": views.command_text(process, truncate=not full),
        "CreatedAt": container.created,
        "RunningFor": f"{views.human_duration(views._seconds_between(container.created, now))} ago",
        "Status": views.status(container, interrupted, process, now),
        "State": views.state(container, process),
        "Networks": ",".join(networks[e.network_id].name for e in endpoints) or container.mode,
        "IPAddresses": ",".join(e.ipv4 for e in endpoints if e.ipv4),
        "Ports": views.ports_column(store.ports_of_container(container.id), _published_ipv6(endpoints, networks)),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(container.labels.items())),
    }


def listed_containers(engine: Engine, every: bool, filters: dict) -> list[Container]:
    """The containers ``ps`` lists: without ``every`` (``-a``) not those exited or never started (Docker's
    rule: ``ps`` shows what runs), then those passing ``filters`` (netcore.cli.formatting)."""
    store = engine.store
    shown = []
    for container in store.containers():
        process = store.process(container.id)
        if not every and process is not None and process.status in (PROCESS_EXITED, PROCESS_CREATED):
            continue
        if filters and not formatting.matches(container_document(engine, container), filters):
            continue
        shown.append(container)
    return shown


def ps(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``ps [-a] [-q] [--no-trunc] [--filter K=V]... [--format F]``."""
    filters = formatting.parse_filters(getattr(args, "filter", None) or (), formatting.CONTAINER_FILTERS)
    containers = listed_containers(engine, getattr(args, "all", False), filters)
    full = getattr(args, "no_trunc", False)
    if args.quiet:
        for c in containers:
            print(c.id if full else c.id[:12], file=out)
        return 0
    networks = {n.id: n for n in engine.store.networks()}
    interrupted = any(c.state != STATE_RUNNING for c in containers) and not engine.action_in_progress()
    now = engine.ctx.clock.now()
    rows = [ps_row(engine, c, interrupted, now, networks, full) for c in containers]
    print(formatting.render(getattr(args, "format", None), rows, PS_TABLE, PS_HEADERS), file=out)
    return 0


def _published_ipv6(endpoints, networks) -> bool:
    """Whether a container's ports are published over IPv6 too: its target network has IPv6."""
    target = ports.target_endpoint(endpoints, networks)
    return target is not None and target.ipv6 is not None


def inspect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    documents = [container_document(engine, engine.store.container(ref)) for ref in args.names]
    _print_documents(documents, getattr(args, "format", None), out)
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


def logs(engine: Engine, args: argparse.Namespace, out: TextIO) -> int | dict:
    """``logs [-f] [--tail N] CONTAINER``: the main process's output (its log and the rotated part before
    it); with ``-f`` the rest as it comes, until the process ends or the client goes away (streamed from
    the agent's connection thread: the engine is free meanwhile)."""
    container = engine.store.container(args.container)
    process = engine.store.process(container.id)
    if process is None:
        raise NetcoreError(f"container {container.name} has no main process: nothing is logged (run -d -- CMD "
                           "starts one)")
    path = engine.processes.log_path(container.id)
    text, offset = _read_log(path, args.tail)
    out.write(text)
    if not args.follow or process.status != "running":
        return 0
    supervisor, pid, ticks = engine.processes, process.pid, process.start_ticks
    return {"exit": 0, "stream": lambda reply: _follow(reply, path, offset, lambda: supervisor.alive(pid, ticks))}


def _read_log(path: str, tail: int | None) -> tuple[str, int]:
    """The log's text (the rotated part first), its last ``tail`` lines only if given; and the log's size."""
    chunks = []
    for name in (f"{path}.1", path):
        try:
            with open(name, "rb") as f:
                chunks.append(f.read())
        except FileNotFoundError:
            chunks.append(b"")
    data = b"".join(chunks)
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[len(lines) - tail:]) if tail else b""
    return data.decode(errors="replace"), len(chunks[1])


FOLLOW_POLL = 0.1  # seconds between looks at a followed log


def _follow(reply, path: str, offset: int, alive: Callable[[], bool]) -> int:
    """Send what is appended to the log at ``path`` from ``offset`` on; a log truncated by its rotation is
    read again from its start. Ends once the process ended (its last output sent) or the client left."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        running = alive()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < offset:
                    offset = 0  # copytruncate: the log starts again
                f.seek(offset)
                data = f.read()
                offset += len(data)
        except FileNotFoundError:
            data = b""
        if data:
            reply.write(decoder.decode(data))
        if not running or reply.peer_closed():
            reply.write(decoder.decode(b"", final=True))
            return 0
        time.sleep(FOLLOW_POLL)


def start(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for container in engine.start(args.names):
        print(container.name, file=out)
    return 0


def stop(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for container in engine.stop(args.names, args.time):
        print(container.name, file=out)
    return 0


def restart(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for container in engine.restart(args.names, args.time):
        print(container.name, file=out)
    return 0


def version(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``version``'s server part (the client prints its own first)."""
    from importlib import metadata

    try:
        release = metadata.version("netcore-dnsd")
    except metadata.PackageNotFoundError:
        release = "unknown"
    print(f"Server: netcored\n Version:      {release}\n Pid:          {os.getpid()}\n"
          f" State dir:    {engine.state_dir}\n Namespace:    {engine.namespace or '(host)'}", file=out)
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


HANDLERS: dict[str, Callable[[Engine, argparse.Namespace, TextIO], int | dict]] = {
    "network create": network_create, "network ls": network_ls, "network inspect": network_inspect,
    "network rm": network_rm, "network prune": network_prune, "network connect": network_connect,
    "network disconnect": network_disconnect,
    "run": run, "exec": exec_, "rm": rm, "ps": ps, "inspect": inspect, "port": port,
    "logs": logs, "start": start, "stop": stop, "restart": restart, "version": version,
    "purge": purge,
    "firewall-reload": firewall_reload, "host-dns": host_dns, "dns-options": dns_options,
}
READ_ONLY = frozenset({"network ls", "network inspect", "ps", "inspect", "port", "exec", "logs"})
