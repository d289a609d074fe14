"""Published ports (issue 14): what publishing costs per mapping, and what a published port costs in throughput.

    sudo .venv/bin/python bench/ports.py [--ports 1000] [--runs 20] [--megabytes 2000] [--rounds 3]

1. **Publishing.** One `netcore run -p 20000-20999:20000-20999` (1,000 mappings in one command),
   ``--runs`` runs publishing one port each against as many runs publishing none (the difference is
   what one mapping adds to a `run`), and the rule count of the table before and after: a mapping is a
   map element, not a rule.
2. **Throughput.** A plain Python TCP transfer (``--megabytes``, 256 KiB writes) from a "LAN" namespace
   joined to the gateway namespace by a veth, into a container: through its published port (DNAT,
   conntrack, netcore's table) and straight to its address, with one rule inserted in its network's
   ``in`` chain that accepts it (netcore's firewall refuses direct access otherwise, as Docker's does):
   the same table and conntrack, so the ratio is the price of the DNAT; and straight to it with no netcore
   table at all (no connection tracking either), for reference. Best of ``--rounds``, alternating.

Everything runs in a sandbox (tests/support/sandbox.py: its own gateway namespace, state dir and
prefix), removed at the end; traffic stays between namespaces this script made. The table goes to stdout.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time

from tests.support.sandbox import cleanup, new_sandbox

SINK = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", int(sys.argv[1])))
server.listen(4)
print("ready", flush=True)
while True:
    peer, _ = server.accept()
    while peer.recv(1 << 20):
        pass
    peer.sendall(b"done")
    peer.close()
"""

SOURCE = """
import socket, sys, time
total = int(sys.argv[3]) << 20
chunk = b"x" * (256 << 10)
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30) as s:
    start = time.perf_counter()
    sent = 0
    while sent < total:
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    s.recv(16)
    print(f"{sent / (time.perf_counter() - start) / 1e6:.1f}")
"""

HOST_LAN, NEIGHBOUR = "192.0.2.1", "192.0.2.2"


def sh(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300, check=True).stdout


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1000


def rule_count(box) -> tuple[int, int]:
    """(rules, map and set elements) of netcore's table, as nft lists it."""
    listing = sh("ip", "netns", "exec", box.prefix, "nft", "list", "table", "inet", "netcore")
    rules, chain = 0, False
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            chain = True
        elif text == "}":
            chain = False
        elif chain and text and not text.startswith(("type ", "comment ")):
            rules += 1
    elements = sum(len(m.group(1).split(",")) for m in re.finditer(r"elements = \{([^}]*)\}", listing, re.S))
    return rules, elements


def publishing(box, ports: int, runs: int) -> list[str]:
    box.nc("network", "create", "--subnet", "10.97.0.0/16", "bench")
    rules_before, elements_before = rule_count(box)
    first, last = 20000, 20000 + ports - 1
    many = timed(lambda: box.nc("run", "--name", "many", "--net", "bench", "-p", f"{first}-{last}:{first}-{last}"))
    rules_after, elements_after = rule_count(box)
    plain, one = [], []
    for index in range(runs):
        plain.append(timed(lambda i=index: box.nc("run", "--name", f"plain{i}", "--net", "bench")))
        one.append(timed(lambda i=index: box.nc("run", "--name", f"one{i}", "--net", "bench", "-p", f"{30000 + i}:80")))
    removal = timed(lambda: box.nc("rm", "many"))
    return [
        f"| one `run` publishing {ports} ports | {many:.0f} ms | {many / ports:.2f} ms per mapping |",
        f"| `rm` of that container | {removal:.0f} ms | {removal / ports:.2f} ms per mapping |",
        f"| `run` without -p (median of {runs}) | {statistics.median(plain):.0f} ms | |",
        f"| `run -p HOST:80` (median of {runs}) | {statistics.median(one):.0f} ms | "
        f"{statistics.median(one) - statistics.median(plain):+.0f} ms for its one mapping |",
        f"| table before / after {ports} mappings | {rules_before} / {rules_after} rules | "
        f"{elements_before} / {elements_after} map and set elements |",
    ]


def throughput(box, megabytes: int, rounds: int) -> list[str]:
    lan = box.neighbour("lan", "lan0", HOST_LAN, NEIGHBOUR)
    sh("ip", "-n", lan, "route", "add", "10.98.0.0/24", "via", HOST_LAN)
    box.nc("network", "create", "--subnet", "10.98.0.0/24", "flow")
    box.nc("run", "--name", "sink", "--net", "flow", "-p", "5001:5001")
    netns = box.nc("inspect", "sink").stdout.split('"SandboxKey": "')[1].split('"')[0].rsplit("/", 1)[1]
    server = box.spawn_in(netns, sys.executable, "-c", SINK, "5001", stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"

    def transfer(address: str, port: int) -> float:
        return float(sh("ip", "netns", "exec", lan, sys.executable, "-c", SOURCE, address, str(port),
                        str(megabytes)))

    network_id = box.nc("network", "inspect", "flow").stdout.split('"Id": "')[1][:12]
    allow = f"insert rule inet netcore in-{network_id} ip daddr 10.98.0.2 tcp dport 5001 accept"
    published, direct, bare = [], [], []
    for _ in range(rounds):
        published.append(transfer(HOST_LAN, 5001))
        sh("ip", "netns", "exec", box.prefix, "nft", allow)
        direct.append(transfer("10.98.0.2", 5001))
        sh("ip", "netns", "exec", box.prefix, "nft", "delete", "table", "inet", "netcore")
        bare.append(transfer("10.98.0.2", 5001))
        box.nc("firewall-reload")
    best = {name: max(values) for name, values in (("published", published), ("direct", direct), ("bare", bare))}
    return [f"| through the published port ({HOST_LAN}:5001) | {best['published']:,.0f} MB/s | "
            f"{best['published'] / best['direct']:.2f} |",
            f"| direct to 10.98.0.2:5001 (netcore's table, one accept) | {best['direct']:,.0f} MB/s | 1.00 |",
            f"| direct, no netcore table and no conntrack | {best['bare']:,.0f} MB/s | "
            f"{best['bare'] / best['direct']:.2f} |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    box = new_sandbox("ncbpt")
    try:
        rows = ["| publishing | time | per mapping |", "|---|---|---|", *publishing(box, args.ports, args.runs)]
        rows += ["", f"| TCP transfer of {args.megabytes} MB from the LAN namespace (best of {args.rounds}) "
                 "| throughput | ratio |", "|---|---|---|", *throughput(box, args.megabytes, args.rounds)]
        print("\n".join(rows))
    finally:
        cleanup(box)
    return 0


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
