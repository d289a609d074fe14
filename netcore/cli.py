"""The Docker-like command line: `netcore network create/ls/inspect/rm/connect/disconnect`, `run`, `exec`, `rm`,
`ps`, `inspect`, `port`, `up`, `down`, `purge`, `firewall-reload`.

A thin shell: parse arguments, check privileges, call one handler per
subcommand, which calls the engine and prints. A usage error is one line and
exit 2; a NetcoreError, an OSError or a store failure is one line and a
non-zero exit; a traceback would be a bug (``NETCORE_DEBUG=1`` shows one).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import TextIO

from . import ports, topology, views
from .dnsd_control import dnsd_options
from .engine import Engine, missing_capabilities
from .errors import NetcoreError, NotFound
from .model import STATE_RUNNING
from .nft_apply import NftablesFirewall

DEFAULT_STATE_DIR = "/var/lib/netcore"
DEBUG_ENV = "NETCORE_DEBUG"  # "1": an unexpected error shows its traceback


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _publish(text: str) -> ports.PublishSpec:
    try:
        return ports.parse_publish(text)
    except ports.PublishError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _port_filter(text: str) -> tuple[int, str]:
    try:
        return ports.parse_port_filter(text)
    except ports.PublishError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2, as dnsd's are."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line; its subparsers are of the same one-line kind."""
    parser = _OneLineParser(prog="netcore", description="Container networks on Linux bridges, with embedded DNS.")
    parser.add_argument("--netns", default=os.environ.get("NETCORE_NETNS") or None,
                        help="gateway namespace for every bridge (sandbox mode; created if missing). "
                             "Default: the host's namespace. Env NETCORE_NETNS")
    parser.add_argument("--state-dir", default=os.environ.get("NETCORE_STATE_DIR") or DEFAULT_STATE_DIR,
                        help=f"where the store lives (default {DEFAULT_STATE_DIR}, env NETCORE_STATE_DIR)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    network = commands.add_parser("network", help="manage networks").add_subparsers(
        dest="network_command", metavar="COMMAND", required=True)
    create = network.add_parser("create", help="create a bridge network and print its ID")
    create.add_argument("name", metavar="NAME")
    create.add_argument("-d", "--driver", default="bridge")
    create.add_argument("--subnet", action="append", default=[], help="CIDR; once for IPv4, once for IPv6")
    create.add_argument("--ip-range", help="allocate container addresses from this CIDR inside the subnet")
    create.add_argument("--gateway", help="gateway address (default: first host address)")
    create.add_argument("--internal", action="store_true", help="no default route out of the network")
    create.add_argument("--ipv6", action="store_true", help="enable IPv6 (a ULA /64 unless --subnet gives one)")
    create.add_argument("--dns", action="append", default=[], metavar="IP[:PORT]",
                        help="upstream DNS servers for names that are not local")
    create.add_argument("-o", "--opt", action="append", default=[], type=_key_value, metavar="KEY=VALUE")
    create.add_argument("--label", action="append", default=[], type=_key_value, metavar="KEY=VALUE")
    network.add_parser("ls", help="list networks")
    inspect_net = network.add_parser("inspect", help="print networks as JSON")
    inspect_net.add_argument("names", nargs="+", metavar="NAME")
    rm_net = network.add_parser("rm", help="remove networks")
    rm_net.add_argument("names", nargs="+", metavar="NAME")
    connect = network.add_parser("connect", help="connect a container to a network")
    connect.add_argument("--alias", action="append", default=[])
    connect.add_argument("--ip")
    connect.add_argument("network", metavar="NETWORK")
    connect.add_argument("container", metavar="CONTAINER")
    disconnect = network.add_parser("disconnect", help="disconnect a container from a network")
    disconnect.add_argument("network", metavar="NETWORK")
    disconnect.add_argument("container", metavar="CONTAINER")

    run = commands.add_parser("run", help="create a container (a network sandbox) and print its ID")
    run.add_argument("--name")
    run.add_argument("--net", "--network", dest="net", metavar="NETWORK|host|none|container:NAME")
    run.add_argument("--net-alias", "--network-alias", dest="aliases", action="append", default=[])
    run.add_argument("--ip")
    run.add_argument("--hostname")
    run.add_argument("--dns", action="append", default=[], metavar="IP[:PORT]")
    run.add_argument("-p", "--publish", action="append", default=[], type=_publish,
                     metavar="[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO]",
                     help="publish a container port on the host (Docker's grammar; repeatable)")
    run.add_argument("-d", "--detach", action="store_true",
                     help="accepted for Docker habits; a sandbox needs no process")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...] to run inside once created")
    exec_ = commands.add_parser("exec", help="run a command inside a container")
    exec_.add_argument("container", metavar="CONTAINER")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    rm = commands.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="also remove containers sharing their namespace")
    rm.add_argument("names", nargs="+", metavar="CONTAINER")
    ps = commands.add_parser("ps", help="list containers")
    ps.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    inspect = commands.add_parser("inspect", help="print containers as JSON")
    inspect.add_argument("names", nargs="+", metavar="CONTAINER")
    port = commands.add_parser("port", help="list a container's published ports, or where one port is published")
    port.add_argument("container", metavar="CONTAINER")
    port.add_argument("port", nargs="?", type=_port_filter, metavar="PORT[/PROTO]")
    for verb, text in (("up", "create what a YAML topology declares"), ("down", "remove what it declares")):
        sub = commands.add_parser(verb, help=text)
        sub.add_argument("-f", "--file", required=True)
    commands.add_parser("purge",
                        help="remove every container and network, stop dnsd; "
                             "in sandbox mode delete the gateway namespace")
    commands.add_parser("firewall-reload",
                        help="apply netcore's whole nftables table again (after a flush or a firewall reload)")
    dns_options = commands.add_parser("dns-options", help="show or change the options of the dnsd netcore "
                                                          "starts (STATE_DIR/dnsd.options)")
    dns_options.add_argument("action", nargs="?", choices=("show", "set", "reset"), default="show")
    dns_options.add_argument("words", nargs=argparse.REMAINDER, metavar="-- OPTION...",
                             help="set: dnsd's options, e.g. -- --metrics --query-log /var/log/dnsd-queries.log")
    host_dns = commands.add_parser("host-dns", help="point the host's resolver (systemd-resolved) at dnsd for "
                                                    "NAME.NETWORK, or stop (host mode only)")
    host_dns.add_argument("state", choices=("on", "off"))
    return parser


def _command(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


# -- one handler per subcommand: (engine, parsed arguments, output stream) -> exit status ----------------------


def network_create(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    network = engine.create_network(args.name, args.subnet, args.ip_range, args.gateway, args.internal,
                                     args.ipv6, args.dns, dict(args.opt), dict(args.label), args.driver)
    print(network.id, file=out)
    return 0


def network_ls(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    rows = [[n.id[:12], n.name, n.driver, "local"] for n in engine.networks_to_show()]
    print(views.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows), file=out)
    return 0


def network_inspect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    store = engine.store
    networks = [engine.network_to_show(ref) for ref in args.names]
    down = engine.dnsd.listeners_down() if any(n.dns_enabled for n in networks) else {}
    documents = []
    for network in networks:
        attached = [(store.container(e.container_id), e) for e in store.endpoints_on_network(network.id)]
        documents.append(views.network_document(network, attached, down))
    print(json.dumps(documents, indent=4), file=out)
    return 0


def network_rm(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    for ref in args.names:
        engine.remove_network(ref)
        print(ref, file=out)
    return 0


def network_connect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    engine.connect(args.network, args.container, args.alias, args.ip)
    return 0


def network_disconnect(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    engine.disconnect(args.network, args.container)
    return 0


def run(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    container = engine.run(args.name, args.net, args.aliases, args.ip, args.hostname, args.dns, args.publish)
    command = _command(args.cmd)
    if command:
        return engine.exec_in(container.id, command)
    print(container.id, file=out)
    return 0


def exec_(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    return engine.exec_in(args.container, _command(args.cmd))


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
    """``netcore dns-options [show]``: the options of the dnsd netcore starts, one line (empty: none), and
    whether the running dnsd uses them; ``set -- WORDS``: replace them and restart dnsd with them (the old
    ones kept if dnsd refuses the new, one line, exit 1); ``reset``: none."""
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


HANDLERS: dict[str, Callable[[Engine, argparse.Namespace, TextIO], int]] = {
    "network create": network_create, "network ls": network_ls, "network inspect": network_inspect,
    "network rm": network_rm, "network connect": network_connect, "network disconnect": network_disconnect,
    "run": run, "exec": exec_, "rm": rm, "ps": ps, "inspect": inspect, "port": port, "up": up, "down": down,
    "purge": purge,
    "firewall-reload": firewall_reload, "host-dns": host_dns, "dns-options": dns_options,
}
READ_ONLY = frozenset({"network ls", "network inspect", "ps", "inspect", "port", "exec"})  # they re-assert the firewall


def command_name(args: argparse.Namespace) -> str:
    """The subcommand as users type it, e.g. ``network create``: the key of its handler in ``HANDLERS``."""
    return f"network {args.network_command}" if args.command == "network" else args.command


def run_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run one parsed command against the engine of its state dir; reconciliation notes and warnings go to stderr."""
    engine = Engine(args.state_dir, args.netns, firewall=NftablesFirewall(args.netns))
    try:
        name = command_name(args)
        if name in READ_ONLY:
            engine.assert_firewall()  # every command puts a missing or changed table back
            engine.revive_dnsd()  # ... and a dnsd that should run, with the options of dnsd.options
        return HANDLERS[name](engine, args, out)
    finally:
        for note in engine.notes:
            print(f"netcore: reconciled: {note}", file=sys.stderr)
        for notice in engine.notices:
            print(f"netcore: {notice}", file=sys.stderr)
        for warning in engine.warnings:
            print(f"netcore: warning: {warning}", file=sys.stderr)
        engine.close()


def main(argv: list[str] | None = None) -> int:
    """The ``netcore`` command: 0 on success; errors are one line on stderr and a non-zero exit.

    Usage errors exit 2; a NetcoreError exits with its code; an OSError or a store failure exits 1.
    With ``NETCORE_DEBUG=1`` in the environment an unexpected error shows its traceback instead.
    """
    args = build_parser().parse_args(argv)
    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        missing = missing_capabilities()
        if missing:
            raise NetcoreError(f"netcore must run as root with {' and '.join(missing)}: "
                               "it creates namespaces and links (permission denied)")
        return run_command(args, sys.stdout)
    except NetcoreError as err:
        print(f"netcore: {err}", file=sys.stderr)
        return err.exit_code
    except sqlite3.Error as err:  # a read, or a write outside Store.transaction(): never half a change either
        if debug:
            raise
        print(f"netcore: {command_name(args)}: the store in {args.state_dir} failed: {err}; nothing was half-written "
              "(every change is one transaction, rolled back on error)", file=sys.stderr)
        return 1
    except OSError as err:
        if debug:
            raise
        print(f"netcore: {command_name(args)}: {_os_error_text(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return 130


def _os_error_text(err: OSError) -> str:
    """``strerror: filename`` as the C library would say it, else the error's own text."""
    text = err.strerror or str(err)
    return f"{text}: {err.filename}" if err.filename else text


if __name__ == "__main__":
    sys.exit(main())
