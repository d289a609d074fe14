"""The `netcore` command line: its parser, and the request a parsed command becomes (pure, light).

The client (netcore.cli.main) and the agent (netcore.agent) share this module: the client parses, the agent
runs ``netcore.cli.commands`` on what was parsed. Imports nothing heavy: argparse, and the pure ``-p``
grammar (netcore.ports) only to check a ``-p``; a usage error costs no agent and no import of the engine.
"""

from __future__ import annotations

import argparse
import os

DEFAULT_STATE_DIR = "/var/lib/netcore"
GLOBAL_OPTIONS = ("state_dir", "netns")  # what says which agent a command goes to, not part of its request
SUBCOMMAND_KEYS = ("command", "network_command", "agent_command", "cluster_command")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _publish(text: str) -> str:
    """A ``-p`` value checked here (a malformed one is a usage error before any request), kept as written:
    the agent parses it again (netcore.ports.parse_publish), so a request carries only JSON values."""
    from netcore import ports  # only a command with -p pays for the grammar's import

    try:
        ports.parse_publish(text)
    except ports.PublishError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _port_filter(text: str) -> tuple[int, str]:
    from netcore import ports

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
    create = network.add_parser("create", help="create a network (bridge, macvlan, ipvlan, overlay) and print its ID")
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
    cluster = commands.add_parser("cluster", help="networks across hosts: this host in a cluster on etcd")
    cluster = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    join = cluster.add_parser("join", help="make this host a member of the cluster whose state is in etcd")
    join.add_argument("--store", required=True, metavar="etcd://HOST:PORT[,HOST:PORT...]",
                      help="the etcd cluster's client endpoints, all of them (for failover)")
    join.add_argument("--advertise-address", required=True, metavar="ADDRESS",
                      help="this host's underlay address, which other hosts send VXLAN (UDP 4789) to")
    join.add_argument("--name", help="this host's name in the cluster (default: its hostname)")
    join.add_argument("--lease-ttl", type=int, default=15, metavar="SECONDS",
                      help="seconds after which a host that stopped answering leaves the cluster (default 15)")
    cluster.add_parser("ls", help="list the cluster's hosts")
    leave = cluster.add_parser("leave", help="leave the cluster (refused while containers are on overlay networks)")
    leave.add_argument("-f", "--force", action="store_true",
                       help="leave even if the store does not answer (this host's keys go when its lease ends)")
    agent = commands.add_parser("agent", help="the per-host agent, netcored, that runs every command").add_subparsers(
        dest="agent_command", metavar="COMMAND", required=True)
    agent.add_parser("status", help="its pid, protocol version, uptime and state dir; exit 1 when none runs")
    agent.add_parser("stop", help="stop it (the next command starts a new one)")
    return parser


def command_name(args: argparse.Namespace) -> str:
    """The subcommand as users type it, e.g. ``network create``: the verb of its request and the key of its
    handler in ``netcore.cli.commands.HANDLERS``."""
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else args.command


def request_params(args: argparse.Namespace) -> dict:
    """The parsed arguments a command's request carries: every option but the global ones and the
    subcommand's words (JSON values: strings, lists, booleans, None)."""
    return {k: v for k, v in vars(args).items() if k not in GLOBAL_OPTIONS and k not in SUBCOMMAND_KEYS}
