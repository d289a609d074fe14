"""The table of bench/dns.sh: medians over runs, and dnsd's ratios to its peers from the same run.

Input: a TSV that dns.sh appends one line to per dnsperf run, with the columns (one line in the file)

    run  server  client  inflight  ticks  clk_tck  rss_kb  server_drops  client_drops
    server_core  load_core  background  dnsperf_output_file  [offered  [cpu_ns]]

where `ticks` is the server's utime+stime delta (/proc/PID/stat) over the dnsperf
run, `offered` the rate dnsperf was held to (-Q; 0 or absent: unlimited) and
`cpu_ns` the server's CPU time over the run from the scheduler's account
(/proc/PID/task/*/schedstat), used instead of `ticks` when present: ticks are
10 ms apart, a twentieth of what a server spends in a 6-second run at 1,000 queries/s.
dnsperf's own summary gives queries, losses, QPS, latency and rcodes; with -v
(`--mode sweep`) its line per answered query gives the 99th percentile.
With several offered rates (`--mode sweep`) the table is one row per rate and
server instead, with dnsd's latency and CPU ratios to each peer (issue 18).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass

SERVERS = ("dnsd", "aardvark-dns", "dnsmasq")
PEERS = ("aardvark-dns", "dnsmasq")


@dataclass
class Measurement:
    run: int
    server: str
    client: str
    inflight: int
    sent: int
    completed: int
    lost: int
    noerror: int
    qps: float
    avg_ms: float
    max_ms: float
    runtime_s: float
    rss_mb: float
    cpu_s: float
    server_drops: int
    client_drops: int
    server_core_s: float  # busy seconds of the server's CPU over the run (/proc/stat, softirq included)
    load_core_s: float  # and of dnsperf's CPU
    background: int  # % busy of the machine just before the run, from other work
    p99_ms: float = float("nan")  # of the answered queries' latencies (dnsperf -v only)
    offered: int = 0  # queries/s dnsperf was held to (-Q), 0: unlimited

    @property
    def cpu_us_per_query(self) -> float:
        return self.cpu_s * 1e6 / self.completed if self.completed else float("nan")

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.runtime_s if self.runtime_s else float("nan")

    def busy_percent(self, seconds: float) -> float:
        """Of dnsperf's run time (the window also holds its wait for lost queries, when idle)."""
        return min(100.0, 100.0 * seconds / self.runtime_s) if self.runtime_s else float("nan")

    @property
    def noerror_percent(self) -> float:
        return 100.0 * self.noerror / self.completed if self.completed else 0.0


def _number(pattern: str, text: str, path: str, cast=float, group: int = 1):
    found = re.search(pattern, text)
    if not found:
        raise ValueError(f"{path}: no {pattern!r} in dnsperf's output")
    return cast(found.group(group))


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of ``values``; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# dnsperf -v: one line per answered query, "> NOERROR c0 A 0.000078" (the last field: its latency in seconds)
_QUERY_LINE = re.compile(r"^> \S+ .* ([\d.]+)$", re.MULTILINE)


def parse_dnsperf(path: str) -> dict:
    with open(path, errors="replace") as f:
        text = f.read()
    latencies = [float(seconds) for seconds in _QUERY_LINE.findall(text)]
    latency = r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)"
    codes = re.search(r"Response codes:\s+(.*)", text)
    noerror = re.search(r"NOERROR (\d+)", codes.group(1)) if codes else None
    return {
        "sent": _number(r"Queries sent:\s+(\d+)", text, path, int),
        "completed": _number(r"Queries completed:\s+(\d+)", text, path, int),
        "lost": _number(r"Queries lost:\s+(\d+)", text, path, int),
        "noerror": int(noerror.group(1)) if noerror else 0,
        "qps": _number(r"Queries per second:\s+([\d.]+)", text, path),
        "avg_ms": _number(latency, text, path) * 1e3,
        "max_ms": _number(latency, text, path, group=3) * 1e3,
        "runtime_s": _number(r"Run time \(s\):\s+([\d.]+)", text, path),
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


def load(path: str) -> list[Measurement]:
    found = []
    with open(path) as f:
        for row in csv.reader(f, delimiter="\t"):
            (run, server, client, inflight, ticks, clk_tck, rss_kb, server_drops, client_drops, server_core,
             load_core, background, output, *rest) = row
            offered = int(rest[0]) if rest and rest[0] else 0
            cpu_s = int(rest[1]) / 1e9 if len(rest) > 1 and rest[1] else int(ticks) / int(clk_tck)
            found.append(Measurement(run=int(run), server=server, client=client, inflight=int(inflight),
                                     offered=offered, rss_mb=int(rss_kb) / 1024, cpu_s=cpu_s,
                                     server_drops=int(server_drops), client_drops=int(client_drops),
                                     server_core_s=int(server_core) / int(clk_tck),
                                     load_core_s=int(load_core) / int(clk_tck), background=int(background),
                                     **parse_dnsperf(output)))
    return found


def median(values) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def fmt(value: float, digits: int) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def text_table(header: list[str], rows: list[list[str]], left: int = 3) -> str:
    """Text columns (the first `left`) flush left, numbers flush right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def same_run_ratios(measurements: list[Measurement], case, peer: str, value) -> float:
    """The median over runs of dnsd's ``value(m)`` over ``peer``'s in the same run and case (client, in-flight,
    offered rate); NaN where either is missing or the peer's is 0 or NaN."""
    by_run = {(m.run, (m.client, m.inflight, m.offered), m.server): m for m in measurements}
    ratios = []
    for run in sorted({m.run for m in measurements}):
        ours, theirs = by_run.get((run, case, "dnsd")), by_run.get((run, case, peer))
        if ours and theirs:
            mine, other = value(ours), value(theirs)
            if other and other == other and mine == mine:
                ratios.append(mine / other)
    return median(ratios)


def render_sweep(measurements: list[Measurement], title: str) -> str:
    """Per offered rate and server: latency (average, p99), CPU per query, losses; then dnsd's same-run ratios."""
    groups: dict[tuple, list[Measurement]] = defaultdict(list)
    for m in measurements:
        groups[(m.offered, m.client, m.inflight, m.server)].append(m)
    order = sorted(groups, key=lambda k: (k[0], k[1] != "container", k[2],
                                          SERVERS.index(k[3]) if k[3] in SERVERS else 9))
    rows = []
    for key in order:
        ms = groups[key]
        rows.append([f"{key[0]:,}", key[3], fmt(median(m.qps for m in ms), 0), fmt(median(m.avg_ms for m in ms), 3),
                     fmt(median(m.p99_ms for m in ms), 3), fmt(median(m.max_ms for m in ms), 2),
                     fmt(median(m.cpu_us_per_query for m in ms), 1), fmt(median(m.lost for m in ms), 0),
                     fmt(median(m.server_drops for m in ms), 0), fmt(median(m.noerror_percent for m in ms), 1),
                     fmt(max(m.background for m in ms), 0), str(len(ms))])
    header = ["offered q/s", "server", "QPS", "avg ms", "p99 ms", "max ms", "CPU us/q", "lost", "srv drop",
              "NOERROR%", "bg%", "runs"]
    out = [title, "", text_table(header, rows, left=2), ""]
    ratio_rows = []
    for case in sorted({(m.client, m.inflight, m.offered) for m in measurements}, key=lambda k: (k[2], k[0], k[1])):
        cells = [f"{case[2]:,}"]
        for peer in PEERS:
            cells += [fmt(same_run_ratios(measurements, case, peer, lambda m: m.avg_ms), 2),
                      fmt(same_run_ratios(measurements, case, peer, lambda m: m.p99_ms), 2),
                      fmt(same_run_ratios(measurements, case, peer, lambda m: m.cpu_us_per_query), 2)]
        ratio_rows.append(cells)
    out += ["dnsd / peer, median over runs of same-run ratios (lower is better for all three)", "",
            text_table(["offered q/s", "avg vs aardvark", "p99 vs aardvark", "CPU/q vs aardvark", "avg vs dnsmasq",
                        "p99 vs dnsmasq", "CPU/q vs dnsmasq"], ratio_rows, left=1), "",
            "dnsperf inside c0's namespace (a container), 200 in flight, held to the offered rate (-Q).",
            "avg ms: dnsperf's average latency; p99 ms: the 99th percentile of the answered queries' latencies",
            "(dnsperf -v, nearest rank). CPU us/q: the server's CPU time over the run (/proc/PID/task/*/schedstat,",
            "else utime+stime of /proc/PID/stat) / queries answered. lost: no reply within 5 s; srv drop:",
            "receive-buffer drops in the server's namespace.",
            "bg%: the most the machine was busy with other work in the second before a run."]
    return "\n".join(out) + "\n"


def render(measurements: list[Measurement], title: str) -> str:
    if len({m.offered for m in measurements}) > 1:
        return render_sweep(measurements, title)
    groups: dict[tuple, list[Measurement]] = defaultdict(list)
    for m in measurements:
        groups[(m.client, m.inflight, m.server)].append(m)
    order = sorted(groups, key=lambda k: (k[0] != "container", k[1], SERVERS.index(k[2]) if k[2] in SERVERS else 9))
    rows = []
    for key in order:
        ms = groups[key]
        client, inflight, server = key
        rows.append([server, client, str(inflight), fmt(median(m.qps for m in ms), 0),
                     fmt(median(m.avg_ms for m in ms), 3), fmt(median(m.max_ms for m in ms), 2),
                     fmt(median(m.lost for m in ms), 0), fmt(median(m.server_drops for m in ms), 0),
                     fmt(median(m.client_drops for m in ms), 0), fmt(median(m.noerror_percent for m in ms), 1),
                     fmt(median(m.rss_mb for m in ms), 1), fmt(median(m.cpu_us_per_query for m in ms), 1),
                     fmt(median(m.cpu_percent for m in ms), 0),
                     fmt(median(m.busy_percent(m.server_core_s) for m in ms), 0),
                     fmt(median(m.busy_percent(m.load_core_s) for m in ms), 0),
                     fmt(max(m.background for m in ms), 0), str(len(ms))])
    header = ["server", "client", "in-flight", "QPS", "avg ms", "max ms", "lost", "srv drop", "cli drop", "NOERROR%",
              "RSS MB", "CPU us/q", "CPU%", "core S%", "core G%", "bg%", "runs"]
    out = [title, "", text_table(header, rows), ""]

    # Ratios from the same run, then the median of those ratios over runs.
    by_run = {(m.run, m.client, m.inflight, m.server): m for m in measurements}
    ratio_rows = []
    for client, inflight in sorted({(m.client, m.inflight) for m in measurements},
                                   key=lambda k: (k[0] != "container", k[1])):
        cells = [client, str(inflight)]
        for peer in PEERS:
            qps, cpu = [], []
            for run in sorted({m.run for m in measurements}):
                ours, theirs = by_run.get((run, client, inflight, "dnsd")), by_run.get((run, client, inflight, peer))
                if ours and theirs:
                    if theirs.qps:
                        qps.append(ours.qps / theirs.qps)
                    if theirs.cpu_us_per_query and theirs.cpu_us_per_query == theirs.cpu_us_per_query:
                        cpu.append(ours.cpu_us_per_query / theirs.cpu_us_per_query)
            cells += [fmt(median(qps), 2), fmt(median(cpu), 2)]
        ratio_rows.append(cells)
    if any(r[2:] != ["-"] * 4 for r in ratio_rows):
        out += ["dnsd / peer, median over runs of same-run ratios "
                "(QPS: higher is better; CPU per query: lower is better)",
                "", text_table(["client", "in-flight", "QPS vs aardvark", "CPU/q vs aardvark", "QPS vs dnsmasq",
                            "CPU/q vs dnsmasq"], ratio_rows, left=2), ""]
    out += ["client 'container': dnsperf inside c0's namespace (an address every server knows as a container);",
            "client 'stranger': a veth address in the subnet that belongs to no container.",
            "CPU us/q: the server's CPU time over the run (/proc/PID/task/*/schedstat, else utime+stime of",
            "/proc/PID/stat) / queries answered. "
            "CPU%: the same of one core.",
            "core S% / core G%: how busy the server's / dnsperf's CPU was (/proc/stat, softirq included); core G%",
            "near 100 means the load generator, not the server, set the QPS. bg%: the most the machine was busy",
            "with other work in the second before a run (runs wait up to 2 min for <= 10%).",
            "lost: dnsperf's count (no reply within 5 s). srv drop / cli drop: UDP receive-buffer drops in the",
            "server's / the client's namespace during the run (the kernel's count of where the lost ones went).",
            "NOERROR%: answered queries that were NOERROR (anything else means the numbers are not comparable)."]
    return "\n".join(out) + "\n"


def emit(text: str, out: str | None) -> None:
    """Print a table, and write it to ``out`` too if given."""
    sys.stdout.write(text)
    if out:
        with open(out, "w") as f:
            f.write(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dns_report.py")
    parser.add_argument("cases", help="TSV written by dns.sh")
    parser.add_argument("--title", default="DNS benchmark")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args(argv)
    emit(render(load(args.cases), args.title), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
