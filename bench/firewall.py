"""The firewall's share of one `netcore run` and one `netcore rm`: rules, render and nft time (issue 13).

    sudo .venv/bin/python bench/firewall.py [--networks 50] [--containers 10,100,1000] [--repeat 20]

What the firewall does in an action is fixed: the engine derives the desired state
from the store (``netcore.firewall.desired_state``), renders the whole table
(``netcore.nftables.render``) and has nft check the live table and replace it
(``netcore.nft_apply``): a `run` or an `rm` costs one ``apply`` of the new table
(nft -f, one transaction, without reading the old one); a command that changes
nothing (`ps`, `inspect`, `exec`) one ``ensure`` that finds it current (nft list).
This measures each step on records made in memory, N containers spread over M
networks, in a network namespace this script creates (``ncbfw`` + random hex)
and deletes on exit; nothing touches the host's rules. Times are medians over
``--repeat`` rounds; the table goes to stdout and bench/results/.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from functools import partial

from netcore.firewall import apply as nft_apply, desired_state
from netcore.firewall.nftables import render
from netcore.model import Container, Endpoint, Network


def world(networks: int, containers: int) -> tuple[list[Network], list[Container], list[Endpoint]]:
    """M networks 10.X.Y.0/24 and N containers, one endpoint each, round-robin over the networks."""
    nets = [Network(id=f"{index:012x}" + "0" * 52, name=f"net{index}", bridge=f"br-{index:012x}",
                    subnet=f"10.{100 + index // 250}.{index % 250}.0/24",
                    gateway=f"10.{100 + index // 250}.{index % 250}.1") for index in range(networks)]
    boxes, endpoints = [], []
    for index in range(containers):
        net = nets[index % networks]
        box = Container(id=f"{index:064x}", name=f"c{index}", hostname=f"c{index}", netns=f"ns{index}")
        boxes.append(box)
        host = 2 + index // networks
        endpoints.append(Endpoint(id=f"{index:064x}", container_id=box.id, network_id=net.id, ifname="eth0",
                                  host_ifname=f"veth{index:07x}", mac="02:42:00:00:00:00",
                                  ipv4=net.subnet.rsplit(".", 1)[0] + f".{host}"))
    return nets, boxes, endpoints


def median_ms(step, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="10,50,200", help="comma-separated network counts (default 10,50,200)")
    parser.add_argument("--containers", default="10,100,1000", help="comma-separated container counts")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/firewall.py: run as root (it creates a network namespace)", file=sys.stderr)
        return 2
    namespace = f"ncbfw{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    rows = []
    try:
        for networks in (int(n) for n in args.networks.split(",")):
            for containers in (int(n) for n in args.containers.split(",")):
                records = world(networks, containers)
                derive = median_ms(partial(desired_state, *records), args.repeat)
                state = desired_state(*records)
                render_ms = median_ms(partial(render, state), args.repeat)
                ruleset = render(state)
                not_rules = ("type ", "comment", "elements")
                rules = sum(1 for line in ruleset.table.splitlines()
                            if line.startswith("\t\t") and not line.strip().startswith(not_rules))
                apply_ms = median_ms(partial(nft_apply.apply, ruleset, namespace), args.repeat)
                ensure_ms = median_ms(partial(nft_apply.ensure, ruleset, namespace), args.repeat)
                rows.append((networks, containers, rules, derive, render_ms, apply_ms, ensure_ms,
                             derive + render_ms + apply_ms, derive + render_ms + ensure_ms))
    finally:
        subprocess.run(["ip", "netns", "delete", namespace], check=False)
    header = ("| networks | containers | rules | derive ms | render ms | nft apply ms | nft check ms "
              "| run or rm ms | ps or exec ms |")
    lines = [header, "|" + "---|" * 9]
    lines += [f"| {n} | {c} | {r} | {d:.2f} | {rd:.2f} | {a:.1f} | {e:.1f} | {t:.1f} | {q:.1f} |"
              for n, c, r, d, rd, a, e, t, q in rows]
    table = "\n".join(lines)
    print(table)
    os.makedirs(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                        time.strftime("firewall-%Y%m%d-%H%M%S.txt"))
    with open(path, "w") as out:
        out.write(table + "\n")
    return 0


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
