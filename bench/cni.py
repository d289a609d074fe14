"""netcore-dns against dnsname as the DNS plugin of a CNI chain (issue 29): ADD/DEL time, then QPS, latency, CPU.

One CniBox (tests/support/cni_runtime.py: a sandbox network namespace where
the chains run, its own resolv.conf and dnsname directory, a fake upstream)
with two networks, each bridge + host-local + its DNS plugin: ``ncd`` with
netcore-dns (dnsd), ``dnm`` with Debian's dnsname (a dnsmasq per network).
N containers (network namespaces) are added to each, alternately, through the
whole chain as a runtime does (one process per plugin, config on stdin); each
ADD and DEL is timed whole and for the DNS plugin alone. The first ADD of a
chain (which starts dnsd or dnsmasq) is reported apart.

Then dnsperf runs from the first container of each network against its
gateway, asking the containers' names (A) in random order: the server is
pinned to CPU 0 and dnsperf to CPU 1; CPU per query is the server's
utime+stime over the run (all threads) over the queries answered; the runs of
the two servers alternate, R times each, and the table shows medians. The
machine is shared: the load average and how busy the CPUs were are printed.

    .venv/bin/python bench/cni.py [--containers N] [--seconds S] [--runs R] [--inflight Q]

Also measured: what one call costs at least (answering VERSION): the C
executable handing it to dnsd, the Python script by how its interpreter is
started (``-IS``, as installed; ``-I``; no flags), and dnsname; and the import
time of ``dnsd.cni.plugin`` (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from podman import cpu_seconds, parse_dnsperf  # bench/podman.py, in this script's folder: the same measures

from tests.support.cni_runtime import CniBox, dig, unavailable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)  # the plugin's scripts and the import timed run this checkout's dnsd

SERVER_CPU, LOAD_CPU = 0, 1


def time_dns_plugin(chain) -> list[float]:
    """Have the chain record how long each run of its DNS plugin takes (seconds) in the list returned."""
    times: list[float] = []
    original = chain.exec_plugin

    def exec_plugin(plugin_type, command, env, config, check=True):
        started = time.perf_counter()
        result = original(plugin_type, command, env, config, check)
        if plugin_type in ("netcore-dns", "dnsname"):
            times.append(time.perf_counter() - started)
        return result

    chain.exec_plugin = exec_plugin
    return times


def busy_percent(seconds: float = 1.0) -> float:
    """How busy all CPUs were over ``seconds`` (/proc/stat)."""
    def sample():
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 100.0 * (1 - (idle1 - idle0) / max(1, total1 - total0))


def start_times(executable: str, runs: int) -> dict[str, tuple[float, float]]:
    """(median, min) ms of answering VERSION: ``executable`` (the C one, dnsd running: it takes the call),
    the Python script ``dnsd cni-install --python-only`` writes started as installed (-IS), with -I and
    plainly, and dnsname."""
    from dnsd.cni.install import script_text

    def sample(argv: list[str]) -> tuple[float, float]:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(argv, input=b'{"cniVersion":"1.0.0"}', env={"CNI_COMMAND": "VERSION"},
                           capture_output=True, check=True)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples), min(samples)

    results = {"C executable, dnsd takes the call": sample([executable])}
    with tempfile.TemporaryDirectory() as scratch:
        text = script_text(sys.executable, REPO)
        body = text.split("\n", 1)[1]
        for label, flags in (("Python script, -IS (as installed)", " -IS"), ("Python script, -I", " -I"),
                             ("Python script, no flags", "")):
            path = os.path.join(scratch, f"p{len(results)}")
            with open(path, "w") as out:
                out.write(f"#!{sys.executable}{flags}\n{body}")
            os.chmod(path, 0o755)
            results[label] = sample([path])
    results["dnsname (Go)"] = sample(["/usr/lib/cni/dnsname"])
    return results


def import_time(interpreter: str) -> tuple[float, list[tuple[float, str]]]:
    """ms to import dnsd.cni.plugin under -IS (every module's own time added up), and the costliest top-level
    imports (cumulative ms, name)."""
    code = f"import sys; sys.path.insert(0, {REPO!r}); import dnsd.cni.plugin"
    err = subprocess.run([interpreter, "-IS", "-X", "importtime", "-c", code], capture_output=True,
                         text=True, check=True).stderr
    total_us, top = 0, []
    for line in err.splitlines()[1:]:  # "import time:  SELF |  CUMULATIVE | NAME" (NAME indented when nested)
        own, cumulative, name = line.split("|")
        total_us += int(own.split(":")[1])
        if not name[1:].startswith(" "):
            top.append((int(cumulative) / 1000, name.strip()))
    return total_us / 1000, sorted(top, reverse=True)[:6]


def dnsmasq_pid(box: CniBox, network: str) -> int:
    path = os.path.join(box.xdg_runtime_dir, "containers", "cni", "dnsname", network, "pidfile")  # as the chain
    with open(path) as pid_file:  # runs it (XDG_RUNTIME_DIR), else DNSNAME_DIR
        return int(pid_file.read().strip())


def dnsd_pid(box: CniBox) -> int:
    with open(os.path.join(box.state_dir, "dnsd.pid")) as pid_file:
        return int(pid_file.read().strip())


def dnsperf(box: CniBox, netns: str, server: str, queries: str, seconds: int, inflight: int, pid: int) -> dict:
    before = cpu_seconds(pid)
    proc = subprocess.run(["nsenter", f"--net={netns}", "taskset", "-c", str(LOAD_CPU), "dnsperf", "-s", server,
                           "-d", queries, "-l", str(seconds), "-q", str(inflight), "-b", "4096"],
                          capture_output=True, text=True, timeout=seconds + 60)
    after = cpu_seconds(pid)
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf failed: {proc.stderr[-300:]}")
    result = parse_dnsperf(proc.stdout)
    result["cpu_us_per_query"] = (after - before) / max(1, result["completed"]) * 1e6
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inflight", type=int, default=100)
    args = parser.parse_args()
    reason = unavailable("dnsname")
    if reason:
        print(f"cni.py: {reason}", file=sys.stderr)
        return 1
    load_before = os.getloadavg()
    busy_before = busy_percent()
    box = CniBox()
    try:
        chains = {"netcore-dns": box.chain("ncd", "10.61.0.0/24"),
                  "dnsname": box.chain("dnm", "10.62.0.0/24", dns="dnsname")}
        plugin_times = {name: time_dns_plugin(chain) for name, chain in chains.items()}
        plugin_add = {name: [] for name in chains}
        plugin_del = {name: [] for name in chains}
        chain_add = {name: [] for name in chains}
        chain_del = {name: [] for name in chains}
        namespaces = {name: [box.container(f"{name[:3]}{n}") for n in range(args.containers)] for name in chains}
        for n in range(args.containers):
            for name, chain in chains.items():
                started = time.perf_counter()
                chain.add(f"{name[:3]}{n:061d}", namespaces[name][n], name=f"c{n}")
                chain_add[name].append(time.perf_counter() - started)
                plugin_add[name].append(plugin_times[name].pop())
        gateways = {"netcore-dns": "10.61.0.1", "dnsname": "10.62.0.1"}
        for name in chains:
            assert dig(box, namespaces[name][0], gateways[name], f"c{args.containers - 1}"), name
        queries = os.path.join(box.workdir, "queries.txt")
        names = [f"c{n}" for n in range(args.containers)]
        rng = random.Random(29)
        with open(queries, "w") as out:
            for _ in range(20000):
                out.write(f"{rng.choice(names)} A\n")
        pids = {"netcore-dns": dnsd_pid(box), "dnsname": dnsmasq_pid(box, "dnm")}
        for pid in pids.values():
            subprocess.run(["taskset", "-a", "-p", "-c", str(SERVER_CPU), str(pid)], check=True, capture_output=True)
        runs = {name: [] for name in chains}
        for _ in range(args.runs):
            for name in chains:
                runs[name].append(dnsperf(box, namespaces[name][0], gateways[name], queries, args.seconds,
                                          args.inflight, pids[name]))
        starts = start_times(os.path.join(box.plugin_dir, "netcore-dns"), 20)
        for n in range(args.containers):
            for name, chain in chains.items():
                started = time.perf_counter()
                chain.delete(f"{name[:3]}{n:061d}", namespaces[name][n], name=f"c{n}")
                chain_del[name].append(time.perf_counter() - started)
                plugin_del[name].append(plugin_times[name].pop())
        imports_ms, top_imports = import_time(sys.executable)
    finally:
        box.close()
    load_after = os.getloadavg()

    def ms(values):
        return statistics.median(values) * 1000

    print(f"# bench/cni.py: {args.containers} containers per chain; {args.runs} dnsperf runs of {args.seconds} s, "
          f"{args.inflight} in flight, server on CPU {SERVER_CPU}, dnsperf on CPU {LOAD_CPU}")
    print(f"# load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; CPUs busy before the run "
          f"{busy_before:.0f}% (the machine is shared)")
    print()
    print("| per container (median ms) | netcore-dns chain | dnsname chain | ratio |")
    print("|---|---|---|---|")
    rows = [("ADD, whole chain (after the first)", chain_add, slice(1, None)),
            ("ADD, the DNS plugin alone (after the first)", plugin_add, slice(1, None)),
            ("DEL, whole chain (but the last)", chain_del, slice(0, -1)),
            ("DEL, the DNS plugin alone (but the last)", plugin_del, slice(0, -1)),
            ("ADD+DEL, whole chain", None, None)]
    for label, table, part in rows:
        if table is None:
            ours = ms(chain_add["netcore-dns"][1:]) + ms(chain_del["netcore-dns"][:-1])
            theirs = ms(chain_add["dnsname"][1:]) + ms(chain_del["dnsname"][:-1])
        else:
            ours, theirs = ms(table["netcore-dns"][part]), ms(table["dnsname"][part])
        print(f"| {label} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    print(f"| first ADD (starts dnsd / dnsmasq), whole chain | {chain_add['netcore-dns'][0] * 1000:.0f} | "
          f"{chain_add['dnsname'][0] * 1000:.0f} | |")
    print(f"| last DEL (stops it), whole chain | {chain_del['netcore-dns'][-1] * 1000:.0f} | "
          f"{chain_del['dnsname'][-1] * 1000:.0f} | |")
    print()
    print("| dnsperf (medians) | dnsd (netcore-dns) | dnsmasq (dnsname) | ratio |")
    print("|---|---|---|---|")
    for key, label in (("qps", "queries/s"), ("latency_ms", "average latency, ms"),
                       ("cpu_us_per_query", "CPU per query, µs"), ("lost", "lost")):
        ours = statistics.median(run[key] for run in runs["netcore-dns"])
        theirs = statistics.median(run[key] for run in runs["dnsname"])
        ratio = f"{ours / theirs:.2f}" if theirs else "-"
        print(f"| {label} | {ours:.{0 if key in ('qps', 'lost') else 3}f} | "
              f"{theirs:.{0 if key in ('qps', 'lost') else 3}f} | {ratio} |")
    print()
    print("| answering VERSION (a plugin's floor per call) | median ms | min ms |")
    print("|---|---|---|")
    for label, (median, minimum) in starts.items():
        print(f"| {label} | {median:.1f} | {minimum:.1f} |")
    print()
    print(f"import of dnsd.cni.plugin under -IS: {imports_ms:.1f} ms in all; costliest: "
          + ", ".join(f"{name} {cumulative:.1f}" for cumulative, name in top_imports))
    print(json.dumps({"raw": {"chain_add_ms": {k: [round(v * 1000, 1) for v in vs] for k, vs in chain_add.items()},
                              "dnsperf": runs}}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
