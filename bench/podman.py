"""dnsd against aardvark-dns as Podman's DNS server, each started by netavark (issue 17).

For each server: a PodmanBox (tests/support/podman_box.py: a sandbox network
namespace, a private netavark state dir, containers.conf naming the helper)
with one Podman network of N busybox `sleep` containers; dnsperf runs inside
the first container's network namespace (an address the server knows as a
container) against the network's gateway, asking random container names (A).
The server is pinned to CPU 0 and dnsperf to CPU 1. CPU per query is the
server process's utime+stime over the run (/proc/PID/stat, all threads) over
the queries answered. Everything is removed at the end (bench/podman.sh).

    .venv/bin/python bench/podman.py [--containers N] [--seconds S] [--inflight Q] [--servers dnsd,aardvark]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time

from tests.support.podman_box import PodmanBox, import_busybox_image, remove_image, unavailable

HERE = os.path.dirname(os.path.abspath(__file__))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15 of stat(5))


def parse_dnsperf(text: str) -> dict:
    def number(pattern: str) -> float:
        found = re.search(pattern, text)
        if not found:
            raise ValueError(f"no {pattern!r} in dnsperf's output:\n{text}")
        return float(found.group(1))

    return {"sent": number(r"Queries sent:\s+(\d+)"), "completed": number(r"Queries completed:\s+(\d+)"),
            "lost": number(r"Queries lost:\s+(\d+)"), "qps": number(r"Queries per second:\s+([\d.]+)"),
            "latency_ms": number(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
            "latency_sd_ms": number(r"Latency StdDev \(s\):\s+([\d.]+)") * 1000,
            "noerror": number(r"NOERROR (\d+)")}


def measure(server: str, image: str, containers: int, seconds: int, inflight: int, workdir: str) -> dict:
    box = PodmanBox(server, image)
    try:
        network = box.network_create("bench")
        started = time.monotonic()
        names = [box.run("c0", network)]
        box.pin_bridge_mac(network)
        names += [box.run(f"c{n}", network) for n in range(1, containers)]
        setup = time.monotonic() - started
        gateway, pid = box.gateway(network), box.server_pid()
        queries = os.path.join(workdir, f"queries-{server}.txt")
        rng = random.Random(17)
        with open(queries, "w") as out:
            out.writelines(f"{rng.choice(names)} A\n" for _ in range(20000))
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], check=True, capture_output=True)
        netns = box.container_netns(names[0])
        dnsperf = ["nsenter", f"--net={netns}", "taskset", "-c", "1", "dnsperf", "-s", gateway, "-d", queries,
                   "-l", str(seconds), "-q", str(inflight), "-t", "2"]
        subprocess.run([*dnsperf[:-6], "-l", "1"], capture_output=True)  # warm-up
        before = cpu_seconds(pid)
        output = subprocess.run(dnsperf, capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(pid) - before
        result = parse_dnsperf(output)
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode().strip()
        result.update(server=server, command=command, cpu_s=used,
                      cpu_us_per_query=used / max(result["completed"], 1) * 1e6, setup_s=setup)
        return result
    finally:
        box.close()


def table(results: list[dict], containers: int, seconds: int, inflight: int) -> str:
    lines = [f"Podman {containers} containers on one network; dnsperf -l {seconds} -q {inflight} inside the first "
             "container's namespace; server on CPU 0, dnsperf on CPU 1; one run each",
             "",
             "| server | QPS | avg latency ms | latency sd ms | lost | CPU µs/query | server CPU s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['server']} | {r['qps']:.0f} | {r['latency_ms']:.3f} | {r['latency_sd_ms']:.3f} | "
                     f"{r['lost']:.0f} | {r['cpu_us_per_query']:.1f} | {r['cpu_s']:.2f} |")
    by_server = {r["server"]: r for r in results}
    if {"dnsd", "aardvark"} <= by_server.keys():
        dnsd, aardvark = by_server["dnsd"], by_server["aardvark"]
        lines += ["", f"QPS ratio dnsd / aardvark-dns: {dnsd['qps'] / aardvark['qps']:.2f}x; "
                      f"CPU per query ratio aardvark-dns / dnsd: "
                      f"{aardvark['cpu_us_per_query'] / dnsd['cpu_us_per_query']:.2f}x"]
    lines += [""] + [f"{r['server']}: netavark started `{r['command']}`" for r in results]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--inflight", type=int, default=100)
    parser.add_argument("--servers", default="dnsd,aardvark")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"podman bench: {reason}", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="podman-bench-")
    image = import_busybox_image(f"localhost/dnsd-bench-busybox-{os.getpid()}:1", workdir)
    try:
        results = [measure(server, image, args.containers, args.seconds, args.inflight, workdir)
                   for server in args.servers.split(",")]
    finally:
        remove_image(image)
        subprocess.run(["rm", "-rf", workdir], check=False)
    report = table(results, args.containers, args.seconds, args.inflight)
    print(report)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"podman-{time.strftime('%Y%m%d-%H%M%S')}.txt"), "w") as out:
        out.write(report + "\n")
    return 0


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
