"""The table of bench/dns_scale.sh: dnsd with few records against many, runs side by side.

Input: a TSV that dns_scale.sh appends one line to per dnsperf run,

    run  records  client  ticks  clk_tck  background  dnsperf_output_file

where ticks / clk_tck is dnsd's CPU time over the run in seconds (dns_scale.sh writes
nanoseconds, bench/measure.sh's cpu_ns, and 1000000000).

The scale of a run is the QPS with many records over the QPS with few, of the
same run and client (the two were measured one right after the other); the
table shows the median of those over runs, and their range.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict

from dns_report import emit, fmt, median, parse_dnsperf, text_table


def load(path: str) -> list[dict]:
    found = []
    with open(path) as f:
        for run, records, client, ticks, clk_tck, background, output in csv.reader(f, delimiter="\t"):
            result = parse_dnsperf(output)
            cpu_s = int(ticks) / int(clk_tck)
            found.append({"run": int(run), "records": int(records), "client": client, "background": int(background),
                          "cpu_us": cpu_s * 1e6 / result["completed"] if result["completed"] else float("nan"),
                          **result})
    return found


def render(rows: list[dict], small: int, large: int, title: str) -> str:
    groups = defaultdict(list)
    for row in rows:
        groups[(row["client"], row["records"])].append(row)
    clients = sorted({row["client"] for row in rows}, key=lambda c: c != "container")
    table = []
    for client in clients:
        for records in (small, large):
            ms = groups[(client, records)]
            table.append([client, f"{records:,}", fmt(median(m["qps"] for m in ms), 0),
                          fmt(median(m["avg_ms"] for m in ms), 3), fmt(median(m["max_ms"] for m in ms), 2),
                          fmt(median(m["lost"] for m in ms), 0), fmt(median(m["cpu_us"] for m in ms), 1),
                          fmt(max((m["background"] for m in ms), default=float("nan")), 0), str(len(ms))])
    by_run = {(row["run"], row["client"], row["records"]): row for row in rows}
    scale_rows = []
    for client in clients:
        ratios = [by_run[(run, client, large)]["qps"] / by_run[(run, client, small)]["qps"]
                  for run in sorted({row["run"] for row in rows})
                  if (run, client, large) in by_run and by_run.get((run, client, small), {}).get("qps")]
        spread = f"{min(ratios):.0%}-{max(ratios):.0%}" if ratios else "-"
        scale_rows.append([client, "-" if not ratios else f"{median(ratios):.0%}", spread,
                           " ".join(f"{r:.0%}" for r in ratios)])
    out = [title, "",
           text_table(["client", "records", "QPS", "avg ms", "max ms", "lost", "CPU us/q", "bg%", "runs"], table,
                      left=2),
           "",
           f"scale: QPS at {large:,} records / QPS at {small:,} records of the same run (median, range, each run)",
           "",
           text_table(["client", "median", "range", "runs"], scale_rows, left=1), "",
           "client 'container': dnsperf inside c0's namespace; 'stranger': an address that belongs to no container.",
           "CPU us/q: dnsd's utime+stime over the run / queries answered. bg%: the most the machine was busy with",
           "other work in the second before a run (runs wait up to 2 min for <= 10%)."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dns_scale_report.py")
    parser.add_argument("cases", help="TSV written by dns_scale.sh")
    parser.add_argument("--small", type=int, required=True)
    parser.add_argument("--large", type=int, required=True)
    parser.add_argument("--title", default="dnsd scale")
    parser.add_argument("--out", help="also write the table here")
    args = parser.parse_args(argv)
    emit(render(load(args.cases), args.small, args.large, args.title), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
