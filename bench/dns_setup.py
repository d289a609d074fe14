"""Helpers of bench/dns.sh that are easier in Python than in shell.

    topology  write the Compose file `netcore up -f` reads: one network, containers c0..cN-1
              (a service each), one alias shared by three of them
    peers     from `netcore inspect` JSON (what dnsd serves), write the same records for
              aardvark-dns (its config-file format) and dnsmasq (an --addn-hosts file),
              and a dnsperf query file of random existing names
    probe     wait until a DNS server answers an A query for a name (run inside a namespace)

No root needed here and no kernel access: dns.sh does that and calls these steps.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time

import yaml

SHARED_ALIAS = "shared"  # the one alias three containers have in common
SHARED_BY = 3

# A Linux bridge takes at most 1023 ports (BR_MAX_PORTS = 1 << 10, port 0 reserved):
# the 1024th `ip link set ... master` fails with EXFULL ("Exchange full"). netcore
# puts every container of a network on one bridge, so a network holds at most
# ~1020 containers; past that the records are network-scoped aliases (see topology).
MAX_CONTAINERS = 1000


def plan_names(records: int, prefix: str, max_containers: int) -> dict[str, list[str]]:
    """Container name -> its aliases, giving `records` distinct names prefix0..prefix{records-1}.

    Up to `max_containers` every name is a container. Past it the remaining names
    are aliases, dealt round robin to the containers, so each name still resolves to
    exactly one address and the record set (name -> address) has `records` names.
    """
    containers = min(records, max_containers)
    plan = {f"{prefix}{i}": [] for i in range(containers)}
    for i in range(min(SHARED_BY, containers)):
        plan[f"{prefix}{i}"].append(SHARED_ALIAS)
    for i in range(containers, records):
        plan[f"{prefix}{i % containers}"].append(f"{prefix}{i}")
    return plan


def write_topology(args: argparse.Namespace) -> None:
    """A Compose file (netcore's topology files are, since issue 28): a service per container, named as it.
    ``--format topology``: the format netcore read before issue 28 (``networks:`` and ``containers:``), for
    ``dns.sh --code`` of a checkout that predates Compose."""
    plan = plan_names(args.records, args.name_prefix, args.max_containers)
    if args.format == "topology":
        network = {"subnet": args.subnet, "ip_range": args.ip_range, "gateway": args.gateway,
                   "options": {"com.docker.network.bridge.name": args.bridge}}
        document = {"networks": {args.network: network},
                    "containers": {name: {"networks": {args.network: {"aliases": aliases} if aliases else None}}
                                   for name, aliases in plan.items()}}
    else:
        network = {"name": args.network, "driver_opts": {"com.docker.network.bridge.name": args.bridge},
                   "ipam": {"config": [{"subnet": args.subnet, "ip_range": args.ip_range, "gateway": args.gateway}]}}
        services = {name: {"container_name": name,
                           "networks": {args.network: {"aliases": aliases}} if aliases else [args.network]}
                    for name, aliases in plan.items()}
        document = {"name": "dnsbench", "services": services, "networks": {args.network: network}}
    with open(args.out, "w") as f:
        yaml.safe_dump(document, f, sort_keys=False)  # in file order: c0 first, the lowest address
    print(f"{len(plan)} containers, {args.records} names (+ alias {SHARED_ALIAS!r} on {min(SHARED_BY, len(plan))})")


def _records(inspect_path: str, network: str) -> list[tuple[str, str, list[str]]]:
    """(container id, IPv4, names dnsd answers for it) for each container on `network`."""
    with open(inspect_path) as f:
        documents = json.load(f)
    found = []
    for doc in documents:
        attached = doc["NetworkSettings"]["Networks"].get(network)
        if attached and attached["IPAddress"]:
            found.append((doc["Id"], attached["IPAddress"], attached["DNSNames"]))
    return found


def write_peers(args: argparse.Namespace) -> None:
    records = _records(args.inspect, args.network)
    plan = plan_names(args.records, args.name_prefix, args.max_containers)
    have = {names[0]: set(names[1:]) for _, _, names in records}
    wrong = sorted((name for name, aliases in plan.items() if name not in have or not set(aliases) <= have[name]),
                   key=lambda n: int(n[len(args.name_prefix):]))
    if wrong:  # a container missing, or present without the aliases the topology gave it
        sys.exit(f"dns_setup: {len(wrong)} of {len(plan)} containers of the topology are missing on {args.network} "
                 f"(or lack their aliases) after `netcore up`; first: {', '.join(wrong[:8])}")
    # aardvark-dns: file named after the network; first line the address(es) it binds
    # (comma-separated; an optional second space-separated column would be the
    # network's upstream servers, so no trailing space), then one line per
    # container: "<id> <ipv4 list> <ipv6 list, empty here> <names, comma-separated>".
    with open(args.aardvark_file, "w") as f:
        f.write(f"{args.aardvark_listen}\n")
        for container_id, ipv4, names in records:
            f.write(f"{container_id} {ipv4}  {','.join(names)}\n")
    # dnsmasq: hosts(5) format, all names of an address on one line.
    with open(args.hosts_file, "w") as f:
        for _, ipv4, names in records:
            f.write(f"{ipv4} {' '.join(names)}\n")
    # dnsperf: random existing names (container names and the shared alias), A queries.
    names = sorted({name for container, aliases in plan.items() for name in (container, *aliases)})
    rng = random.Random(args.seed)
    with open(args.queries, "w") as f:
        for _ in range(args.query_count):
            f.write(f"{rng.choice(names)} A\n")
    print(f"{len(records)} containers, {len(names)} query names")


def _query(name: str, qid: int) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD, one question
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".") if part)
    return header + labels + b"\x00" + struct.pack("!HH", 1, 1)  # A, IN


def probe(args: argparse.Namespace) -> None:
    """Exit 0 once `server` answers NOERROR with at least one record, 1 at the deadline."""
    deadline = time.monotonic() + args.timeout
    qid = 0
    last = "no answer"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            qid = (qid + 1) & 0xFFFF
            try:
                sock.sendto(_query(args.name, qid), (args.server, args.port))
                reply = sock.recv(4096)
            except OSError as err:  # timeout, or ICMP port unreachable while it starts
                last = str(err) or type(err).__name__
                time.sleep(0.05)
                continue
            rid, flags, _, ancount = struct.unpack("!HHHH", reply[:8])
            if rid == qid and flags & 0xF == 0 and ancount > 0:
                return
            last = f"rcode {flags & 0xF}, {ancount} answers"
            time.sleep(0.05)
    sys.exit(f"dns_setup: {args.server} does not answer {args.name!r} within {args.timeout:.0f}s ({last})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dns_setup.py")
    steps = parser.add_subparsers(dest="step", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--records", type=int, required=True)
    common.add_argument("--name-prefix", default="c")
    common.add_argument("--max-containers", type=int, default=MAX_CONTAINERS)
    common.add_argument("--network", default="benchnet")

    topo = steps.add_parser("topology", parents=[common])
    topo.add_argument("--subnet", required=True)
    topo.add_argument("--ip-range", required=True)
    topo.add_argument("--gateway", required=True)
    topo.add_argument("--format", choices=("compose", "topology"), default="compose",
                      help="topology: the file format of netcore before issue 28 (no netcore/compose)")
    topo.add_argument("--bridge", required=True)
    topo.add_argument("--out", required=True)

    peers = steps.add_parser("peers", parents=[common])
    peers.add_argument("--inspect", required=True, help="JSON of `netcore inspect` of every container")
    peers.add_argument("--aardvark-file", required=True)
    peers.add_argument("--aardvark-listen", required=True)
    peers.add_argument("--hosts-file", required=True)
    peers.add_argument("--queries", required=True)
    peers.add_argument("--query-count", type=int, default=100_000)
    peers.add_argument("--seed", type=int, default=4)

    check = steps.add_parser("probe")
    check.add_argument("--server", required=True)
    check.add_argument("--port", type=int, default=53)
    check.add_argument("--name", required=True)
    check.add_argument("--timeout", type=float, default=10.0)

    args = parser.parse_args(argv)
    {"topology": write_topology, "peers": write_peers, "probe": probe}[args.step](args)


if __name__ == "__main__":
    main()
