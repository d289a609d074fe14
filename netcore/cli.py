"""The Docker-like command line: `netcore network create/ls/inspect/rm/connect/disconnect`, `run`, `exec`, `rm`, `ps`, `inspect`, `up`, `down`, `purge`.

A thin shell: parse arguments, call the engine once, print. A NetcoreError
becomes one line on stderr and a non-zero exit; a traceback would be a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

from . import topology, views
from .engine import Engine
from .errors import NetcoreError

DEFAULT_STATE_DIR = "/var/lib/netcore"


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netcore", description="Container networks on Linux bridges, with embedded DNS.")
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
    run.add_argument("-d", "--detach", action="store_true", help="accepted for Docker habits; a sandbox needs no process")
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
    for verb, text in (("up", "create what a YAML topology declares"), ("down", "remove what it declares")):
        sub = commands.add_parser(verb, help=text)
        sub.add_argument("-f", "--file", required=True)
    commands.add_parser("purge", help="remove every container and network, stop dnsd; in sandbox mode delete the gateway namespace")
    return parser


def _command(argv: list[str]) -> list[str]:
    return argv[1:] if argv[:1] == ["--"] else argv


def run_command(args: argparse.Namespace, out) -> int:
    engine = Engine(args.state_dir, args.netns)
    try:
        return _dispatch(engine, args, out)
    finally:
        for note in engine.notes:
            print(f"netcore: reconciled: {note}", file=sys.stderr)
        for warning in engine.warnings:
            print(f"netcore: warning: {warning}", file=sys.stderr)
        engine.close()


def _dispatch(engine: Engine, args: argparse.Namespace, out) -> int:
    store = engine.store
    if args.command == "network":
        sub = args.network_command
        if sub == "create":
            network = engine.create_network(args.name, args.subnet, args.ip_range, args.gateway, args.internal,
                                             args.ipv6, args.dns, dict(args.opt), dict(args.label), args.driver)
            print(network.id, file=out)
        elif sub == "ls":
            rows = [[n.id[:12], n.name, n.driver, "local"] for n in store.networks()]
            print(views.table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows), file=out)
        elif sub == "inspect":
            documents = []
            networks = [store.network(ref) for ref in args.names]
            down = engine.dnsd.listeners_down() if any(n.dns_enabled for n in networks) else {}
            for network in networks:
                attached = [(store.container(e.container_id), e) for e in store.endpoints_on_network(network.id)]
                documents.append(views.network_document(network, attached, down))
            print(json.dumps(documents, indent=4), file=out)
        elif sub == "rm":
            for ref in args.names:
                engine.remove_network(ref)
                print(ref, file=out)
        elif sub == "connect":
            engine.connect(args.network, args.container, args.alias, args.ip)
        elif sub == "disconnect":
            engine.disconnect(args.network, args.container)
        return 0
    if args.command == "run":
        container = engine.run(args.name, args.net, args.aliases, args.ip, args.hostname, args.dns)
        command = _command(args.cmd)
        if command:
            return engine.exec_in(container.id, command)
        print(container.id, file=out)
    elif args.command == "exec":
        return engine.exec_in(args.container, _command(args.cmd))
    elif args.command == "rm":
        for container in engine.remove_containers(args.names, args.force):
            print(container.name, file=out)
    elif args.command == "ps":
        containers = store.containers()
        if args.quiet:
            for c in containers:
                print(c.id[:12], file=out)
            return 0
        networks = {n.id: n.name for n in store.networks()}
        rows = []
        for c in containers:
            endpoints = store.endpoints_of_container(c.id)
            nets = ",".join(networks[e.network_id] for e in endpoints) or c.mode
            addresses = ",".join(e.ipv4 for e in endpoints if e.ipv4)
            rows.append([c.id[:12], c.name, nets, addresses])
        print(views.table(["CONTAINER ID", "NAME", "NETWORKS", "IP ADDRESSES"], rows), file=out)
    elif args.command == "inspect":
        documents = []
        for ref in args.names:
            container = store.container(ref)
            attached = [(store.network(e.network_id), e) for e in store.endpoints_of_container(container.id)]
            peer = store.container(container.peer) if container.peer else None
            documents.append(views.container_document(container, attached, peer))
        print(json.dumps(documents, indent=4), file=out)
    elif args.command in ("up", "down"):
        spec = topology.load(args.file)
        actions = topology.up(engine, spec) if args.command == "up" else topology.down(engine, spec)
        for line in actions:
            print(line, file=out)
    elif args.command == "purge":
        engine.purge()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run_command(args, sys.stdout)
    except NetcoreError as err:
        print(f"netcore: {err}", file=sys.stderr)
        return err.exit_code
    except sqlite3.Error as err:  # a read, or a write outside Store.transaction(): never half a change either
        print(f"netcore: {args.command}: the store in {args.state_dir} failed: {err}; nothing was half-written "
              "(every change is one transaction, rolled back on error)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
