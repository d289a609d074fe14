"""The `netcore` command line: its parser, and the request a parsed command becomes (pure, light).

The client (netcore.cli.main) and the agent (netcore.agent) share this module: the client parses, the agent
runs ``netcore.cli.commands`` on what was parsed. Imports nothing heavy: argparse, and the pure ``-p``
grammar (netcore.ports) only to check a ``-p``; a usage error costs no agent and no import of the engine.
"""

from __future__ import annotations

import argparse
import os
import sys

from netcore.cli import DEFAULT_STATE_DIR
from netcore.system.arguments import OneLineParser

GLOBAL_OPTIONS = ("state_dir", "netns")  # what says which agent a command goes to, not part of its request
SUBCOMMAND_KEYS = ("command", "network_command", "agent_command", "compose_command", "cluster_command")
LOCAL_VERBS = frozenset({"completion"})  # answered by the client itself: no agent, no privilege needed


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


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size()`` finds it (``COLUMNS``, else standard output's
    terminal, else 80), without importing shutil (with bz2, lzma and zlib under it) into the client."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help formatter, its width found by ``_columns`` (argparse makes one for every option added)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        super().__init__(prog, indent_increment, max_help_position, _columns() - 2 if width is None else width)


class _OneLineParser(OneLineParser):
    """The project's one-line usage errors (netcore.system.arguments), with ``(see PROG --help)`` after them;
    exit 2 (``run`` with a ``-- CMD``: 125, Docker's status for its own failures in ``docker run``); help
    formatted to the terminal's width found by ``_columns``."""

    help_hint = True

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _tail(text: str) -> int | None:
    """``logs --tail N``: the last N lines, ``all`` (None) for every one, as Docker takes it."""
    return None if text == "all" else _non_negative(text)


def _formatting(parser: argparse.ArgumentParser, short_f: bool = False, filters: bool = False,
                quiet: bool = False, no_trunc: bool = False) -> None:
    """Docker's scripting options on a listing or inspect command (netcore.cli.formatting)."""
    names = ("-f", "--format") if short_f else ("--format",)
    parser.add_argument(*names, dest="format", metavar="FORMAT",
                        help="json, table, table TEMPLATE, or a Go template such as '{{.Name}}'")
    if filters:
        parser.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                            help="only what matches (repeatable)")
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    if no_trunc:
        parser.add_argument("--no-trunc", action="store_true", help="full IDs and commands")


class ParseFailed(Exception):
    """A command line a quiet parser (``build_parser(quiet=True)``) did not take: a usage error, or help asked
    for; it printed nothing."""


class _QuietParser(_OneLineParser):
    """A parser that prints nothing and raises ParseFailed where argparse would print and exit: the agent's,
    for a command line a client sent (netcore.agent.server); the client says why in its own words."""

    def _print_message(self, message, file=None):
        pass

    def exit(self, status=0, message=None):
        raise ParseFailed(status)


class _OneCommand(argparse._SubParsersAction):
    """The commands' subparsers when only command ``only``'s is wanted: ``add_parser`` of any other returns
    ``_SKIPPED``, which takes every call and builds nothing."""

    def __init__(self, *args, only: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.only = only

    def add_parser(self, name, **kwargs):
        return super().add_parser(name, **kwargs) if name == self.only else _SKIPPED


class _Skipped:
    """A parser not built: every method is accepted and returns this again (``add_subparsers().add_parser()``)."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self


_SKIPPED = _Skipped()
GLOBAL_WITH_VALUE = ("--netns", "--state-dir")


def command_word(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word after the global options), or None when it starts with
    anything else (``-h``, an unknown option, nothing)."""
    words = iter(argv)
    for word in words:
        if word in GLOBAL_WITH_VALUE:
            next(words, None)
        elif not word.startswith(tuple(f"{option}=" for option in GLOBAL_WITH_VALUE)):
            return None if word.startswith("-") else word
    return None


def build_parser(command: str | None = None, quiet: bool = False) -> argparse.ArgumentParser:
    """The parser of the whole command line; its subparsers are of the same one-line kind (``quiet``: they
    print nothing and raise ParseFailed instead of exiting).

    With ``command`` (``command_word`` of the command line) only that command's subparser is built, which
    parses that command line exactly as the whole parser does: the client parses with it (argparse makes a
    help formatter for every option it adds, so the whole tree would cost more than the client's imports).
    A ``command`` that is no command gets the whole parser, whose error names the choices."""
    kind = _QuietParser if quiet else _OneLineParser
    if command is not None:
        parser = _build_parser(command, kind)
        return parser if command in parser._subparsers._group_actions[0].choices else _build_parser(None, kind)
    return _build_parser(None, kind)


def _build_parser(command: str | None, kind: type[_OneLineParser]) -> argparse.ArgumentParser:
    parser = kind(prog="netcore", description="Container networks on Linux bridges, with embedded DNS.")
    parser.add_argument("--netns", default=os.environ.get("NETCORE_NETNS") or None,
                        help="gateway namespace for every bridge (sandbox mode; created if missing). "
                             "Default: the host's namespace. Env NETCORE_NETNS")
    parser.add_argument("--state-dir", default=os.environ.get("NETCORE_STATE_DIR") or DEFAULT_STATE_DIR,
                        help=f"where the store lives (default {DEFAULT_STATE_DIR}, env NETCORE_STATE_DIR)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     **({"action": _OneCommand, "only": command} if command else {}))

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
    network_ls = network.add_parser("ls", help="list networks")
    _formatting(network_ls, filters=True, quiet=True, no_trunc=True)
    inspect_net = network.add_parser("inspect", help="print networks as JSON")
    _formatting(inspect_net, short_f=True)
    inspect_net.add_argument("names", nargs="+", metavar="NAME")
    rm_net = network.add_parser("rm", help="remove networks")
    rm_net.add_argument("names", nargs="+", metavar="NAME")
    prune = network.add_parser("prune", help="remove every network no container uses")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
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
    run.add_argument("--net", "--network", dest="net", action="append", default=[],
                     metavar="NETWORK|host|none|container:NAME",
                     help="repeatable: every network is attached, the first as eth0 (Docker 25)")
    run.add_argument("--net-alias", "--network-alias", dest="aliases", action="append", default=[],
                     help="an alias on the first network")
    run.add_argument("--ip", help="a fixed address on the first network")
    run.add_argument("--hostname")
    run.add_argument("--dns", action="append", default=[], metavar="IP[:PORT]")
    run.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN",
                     help="search domain of its resolv.conf ('.' for none)")
    run.add_argument("--add-host", dest="add_host", action="append", default=[], metavar="HOST:IP",
                     help="a line of its hosts file (IP may be host-gateway)")
    run.add_argument("-p", "--publish", action="append", default=[], type=_publish,
                     metavar="[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO]",
                     help="publish a container port on the host (Docker's grammar; repeatable)")
    run.add_argument("-d", "--detach", action="store_true",
                     help="with -- CMD: start CMD as the container's main process (kept by netcored) and return")
    run.add_argument("cmd", nargs=argparse.REMAINDER,
                     help="-- CMD [ARG...]: with -d the main process; without, run in this terminal as exec does")
    exec_ = commands.add_parser("exec", help="run a command inside a container")
    exec_.add_argument("container", metavar="CONTAINER")
    exec_.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    rm = commands.add_parser("rm", help="remove containers")
    rm.add_argument("-f", "--force", action="store_true",
                    help="stop a running container's processes (SIGTERM, SIGKILL after 10 s) and remove "
                         "containers sharing its namespace too")
    rm.add_argument("names", nargs="+", metavar="CONTAINER")
    ps = commands.add_parser("ps", help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="exited and never started ones too")
    _formatting(ps, filters=True, quiet=True, no_trunc=True)
    inspect = commands.add_parser("inspect", help="print containers as JSON")
    _formatting(inspect, short_f=True)
    inspect.add_argument("names", nargs="+", metavar="CONTAINER")
    port = commands.add_parser("port", help="list a container's published ports, or where one port is published")
    port.add_argument("container", metavar="CONTAINER")
    port.add_argument("port", nargs="?", type=_port_filter, metavar="PORT[/PROTO]")
    logs = commands.add_parser("logs", help="print a container's main process output")
    logs.add_argument("-f", "--follow", action="store_true", help="go on printing until the process ends")
    logs.add_argument("-n", "--tail", type=_tail, default=None, metavar="N", help="only the last N lines (all)")
    logs.add_argument("container", metavar="CONTAINER")
    for verb, text in (("start", "start containers' main processes"),
                       ("stop", "stop containers' processes (SIGTERM, SIGKILL after the grace period)"),
                       ("restart", "stop, then start containers' main processes")):
        sub = commands.add_parser(verb, help=text)
        if verb != "start":
            sub.add_argument("-t", "--time", type=_non_negative, default=10, metavar="SECONDS",
                             help="grace period before SIGKILL (10)")
        sub.add_argument("names", nargs="+", metavar="CONTAINER")
    for verb, text in (("up", "compose up -d for one Compose file (netcore's topology files are Compose files)"),
                       ("down", "compose down for one Compose file")):
        sub = commands.add_parser(verb, help=text)
        sub.add_argument("-f", "--file", dest="files", action="append", required=True, metavar="FILE")
        sub.add_argument("-p", "--project-name", dest="project_name", metavar="NAME")
    _compose(commands)
    commands.add_parser("version", help="netcore's and netcored's versions")
    completion = commands.add_parser("completion", help="print the shell completion script (bash), e.g. "
                                                        "netcore completion bash > /etc/bash_completion.d/netcore")
    completion.add_argument("shell", choices=("bash",))
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


def _compose(commands) -> None:
    """``netcore compose [-f FILE]... [-p NAME] [--env-file F]... [--project-directory D] COMMAND``."""
    compose = commands.add_parser("compose", help="Compose files: up, down, ps, config, ls")
    compose.add_argument("-f", "--file", dest="files", action="append", default=[], metavar="FILE",
                         help="a Compose file (repeatable, merged in order; - reads standard input)")
    compose.add_argument("-p", "--project-name", dest="project_name", metavar="NAME")
    compose.add_argument("--env-file", dest="env_files", action="append", default=[], metavar="FILE")
    compose.add_argument("--project-directory", dest="project_directory", metavar="DIR")
    verbs = compose.add_subparsers(dest="compose_command", metavar="COMMAND", required=True)
    up = verbs.add_parser("up", help="create and start what the files describe, converging")
    up.add_argument("-d", "--detach", action="store_true", help="return once done (without: follow the logs)")
    up.add_argument("--remove-orphans", action="store_true", help="remove the project's containers of services "
                                                                  "no longer in the files")
    down = verbs.add_parser("down", help="stop and remove the project's containers and networks")
    down.add_argument("--remove-orphans", action="store_true")
    down.add_argument("-t", "--timeout", type=_non_negative, default=10, metavar="SECONDS")
    cps = verbs.add_parser("ps", help="list the project's containers")
    cps.add_argument("-a", "--all", action="store_true")
    cps.add_argument("-q", "--quiet", action="store_true")
    cps.add_argument("--format", metavar="FORMAT")
    config = verbs.add_parser("config", help="print the files merged and interpolated")
    config.add_argument("--services", action="store_true", help="only the services' names")
    config.add_argument("--networks", action="store_true", help="only the networks' keys")
    config.add_argument("-q", "--quiet", action="store_true", help="only check the files")
    ls = verbs.add_parser("ls", help="list the projects")
    ls.add_argument("-a", "--all", action="store_true", help="projects with no container running too")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--format", metavar="FORMAT")


def command_name(args: argparse.Namespace) -> str:
    """The subcommand as users type it, e.g. ``network create``: the verb of its request and the key of its
    handler in ``netcore.cli.commands.HANDLERS``."""
    sub = getattr(args, f"{args.command.replace('-', '_')}_command", None)
    return f"{args.command} {sub}" if sub else args.command


def request_params(args: argparse.Namespace) -> dict:
    """The parsed arguments a command's request carries: every option but the global ones and the
    subcommand's words (JSON values: strings, lists, booleans, None)."""
    return {k: v for k, v in vars(args).items() if k not in GLOBAL_OPTIONS and k not in SUBCOMMAND_KEYS}
