"""bench/dns_report.py: the rate sweep's percentiles and same-run ratios (issue 18), from made-up dnsperf outputs."""

from __future__ import annotations

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

import dns_report  # bench/ is no package: found through the path above


def dnsperf_output(path, latencies: list[float], cpu_queries: int | None = None) -> str:
    """A dnsperf -v output: one line per answered query, then the summary dns_report reads."""
    count = cpu_queries or len(latencies)
    lines = [f"> NOERROR c{i % 100} A {seconds:.6f}" for i, seconds in enumerate(latencies)]
    lines += ["Statistics:", f"  Queries sent:         {count}", f"  Queries completed:    {count} (100.00%)",
              "  Queries lost:         0 (0.00%)", f"  Response codes:       NOERROR {count} (100.00%)",
              "  Run time (s):         1.000000", f"  Queries per second:   {count}.000000",
              f"  Average Latency (s):  {sum(latencies) / len(latencies):.6f} (min 0.000010, max {max(latencies):.6f})"]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_p99_is_the_nearest_rank_of_the_answered_queries(tmp_path):
    latencies = [0.0001] * 98 + [0.002, 0.005]  # 100 queries: the 99th slowest is 2 ms
    parsed = dns_report.parse_dnsperf(dnsperf_output(tmp_path / "out.txt", latencies))
    assert parsed["p99_ms"] == 2.0
    assert dns_report.percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert math.isnan(dns_report.percentile([], 0.99))


def test_without_per_query_lines_p99_is_unknown(tmp_path):
    path = tmp_path / "out.txt"
    dnsperf_output(path, [0.0001, 0.0002])
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith(">")))
    assert math.isnan(dns_report.parse_dnsperf(str(path))["p99_ms"])


def test_a_sweep_has_a_row_per_rate_and_server_and_same_run_ratios(tmp_path):
    cases = tmp_path / "cases.tsv"
    rows = []
    # two rates; dnsd twice as slow as dnsmasq at 1,000 q/s and as quick at 2,000; ticks give CPU per query
    for offered, latency in ((1000, {"dnsd": 0.0002, "dnsmasq": 0.0001, "aardvark-dns": 0.0004}),
                             (2000, {"dnsd": 0.0001, "dnsmasq": 0.0001, "aardvark-dns": 0.0002})):
        for server, seconds in latency.items():
            out = dnsperf_output(tmp_path / f"{server}-{offered}.txt", [seconds] * offered)
            ticks = {"dnsd": 2, "dnsmasq": 4, "aardvark-dns": 8}[server]
            rows.append(["1", server, "container", "200", str(ticks), "100", "1024", "0", "0", "0", "0", "3", out,
                         str(offered)])
    cases.write_text("".join("\t".join(row) + "\n" for row in rows))
    text = dns_report.render(dns_report.load(str(cases)), "sweep")
    table = [line.split() for line in text.splitlines()]
    assert table[4][:5] == ["1,000", "dnsd", "1,000", "0.200", "0.200"]
    ratios = {row[0]: row[1:] for row in table if len(row) == 7 and row[0] in ("1,000", "2,000")}
    # avg, p99, CPU/q against aardvark-dns, then against dnsmasq
    assert ratios["1,000"] == ["0.50", "0.50", "0.25", "2.00", "2.00", "0.50"]
    assert ratios["2,000"] == ["0.50", "0.50", "0.25", "1.00", "1.00", "0.50"]


def test_old_case_files_without_a_rate_still_load(tmp_path):
    out = dnsperf_output(tmp_path / "out.txt", [0.0001] * 10)
    (tmp_path / "cases.tsv").write_text("\t".join(["1", "dnsd", "container", "200", "1", "100", "1024", "0", "0",
                                                    "0", "0", "3", out]) + "\n")
    [measurement] = dns_report.load(str(tmp_path / "cases.tsv"))
    assert measurement.offered == 0
    assert "QPS vs aardvark" not in dns_report.render([measurement], "one")


def test_the_schedulers_cpu_time_is_used_when_the_case_has_it(tmp_path):
    """A case with cpu_ns (schedstat, exact) counts it; without (an empty column), the ticks."""
    out = dnsperf_output(tmp_path / "out.txt", [0.0001] * 10)
    columns = ["1", "dnsd", "container", "200", "3", "100", "1024", "0", "0", "0", "0", "3", out, "1000"]
    (tmp_path / "cases.tsv").write_text("\t".join([*columns, "12345678"]) + "\n" + "\t".join([*columns, ""]) + "\n")
    exact, ticks = dns_report.load(str(tmp_path / "cases.tsv"))
    assert exact.cpu_s == pytest.approx(0.012345678)
    assert ticks.cpu_s == pytest.approx(0.03)
    assert exact.offered == ticks.offered == 1000
