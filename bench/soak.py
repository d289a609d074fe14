"""A bounded soak of netcore + dnsd in a sandbox: churn under load, garbage, TCP abuse, upstream faults, kills.

    sudo .venv/bin/python bench/soak.py [--seconds 120] [--names 8]

For --seconds it keeps a client querying a set of names while containers holding
those names are created, connected, disconnected and removed, and every few
seconds it also sends a garbage burst, holds abusive TCP connections, asks a
silent upstream, and kill -9s dnsd. At the end it prints the figures issue 5
asks for: operations done, queries answered, wrong answers, lost queries, dnsd
restarts and dnsd's memory. Traffic stays inside the sandbox's own namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from tests.support.dns import PROBE
from tests.support.dns_probe import check_churn
from tests.support.sandbox import cleanup, new_sandbox, wait_for


def rss_kib(pid: int | None) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, TypeError):
        return 0


def namespace_of(box, name: str) -> str:
    return json.loads(box.nc("inspect", name).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def soak(box, seconds: float, count: int, rng: random.Random) -> dict:
    box.nc("network", "create", "--subnet", "10.90.0.0/16", "soak")
    box.nc("network", "create", "--subnet", "10.91.0.0/16", "side")
    box.nc("run", "--name", "client", "--net", "soak")  # no upstream: a name that is gone is NXDOMAIN at once
    box.nc("run", "--name", "abuser", "--net", "soak", "--dns", "10.90.255.254")  # a silent upstream
    names = [f"s{i}" for i in range(count)]
    workdir = tempfile.mkdtemp(prefix="soak-")
    stopfile = os.path.join(workdir, "stop")
    answers_path = os.path.join(workdir, "answers.jsonl")
    with open(answers_path, "w") as log:
        probe = box.spawn_in(namespace_of(box, "client"), sys.executable, PROBE, "churn", "10.90.0.1", stopfile,
                             *names, stdout=log)
    visible: dict[str, list] = {n: [] for n in names}
    alive: dict[str, bool] = {}  # name -> attached through connect (True) or run (False)
    outages: list[tuple[float, float]] = []  # from a kill -9 of dnsd to its restart
    figures = {"operations": 0, "garbage sent": 0, "abusive tcp": 0, "dnsd kills": 0, "forwarded servfail": 0}
    rss_start = rss_kib(box.dnsd_pid())
    deadline = time.monotonic() + seconds
    next_fault = time.monotonic() + 5
    while time.monotonic() < deadline:
        name = rng.choice(names)
        if name in alive:
            appeared_by_connect = alive.pop(name)
            disappearing = time.monotonic()
            if appeared_by_connect:
                box.nc("network", "disconnect", "soak", name)
                disappeared = time.monotonic()
                box.nc("rm", name)
            else:
                box.nc("rm", name)
                disappeared = time.monotonic()
            visible[name][-1][3:] = [disappearing, disappeared]
            figures["operations"] += 2 if appeared_by_connect else 1
        else:
            by_connect = rng.random() < 0.5
            if by_connect:
                box.nc("run", "--name", name, "--net", "side")
            appearing = time.monotonic()
            if by_connect:
                box.nc("network", "connect", "soak", name)
            else:
                box.nc("run", "--name", name, "--net", "soak")
            appeared = time.monotonic()
            address = json.loads(box.nc("inspect", name).stdout)[0]["NetworkSettings"]["Networks"]["soak"]["IPAddress"]
            visible[name].append([address, appearing, appeared, float("inf"), float("inf")])
            alive[name] = by_connect
            figures["operations"] += 2 if by_connect else 1
        if time.monotonic() >= next_fault:
            next_fault = time.monotonic() + 5
            figures["garbage sent"] += 500
            box.exec("abuser", sys.executable, PROBE, "garbage", "10.90.0.1", "500")
            abuser = box.spawn_in(namespace_of(box, "abuser"), sys.executable, PROBE, "tcp-abuse", "10.90.0.1", "200",
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            abuser.stdout.readline()
            figures["abusive tcp"] += 200
            out = box.exec("abuser", "dig", "+time=5", "+tries=1", "example.invalid", check=False).stdout
            figures["forwarded servfail"] += "status: SERVFAIL" in out
            abuser.stdin.close()
            abuser.wait()
            if rng.random() < 0.3:
                pid = box.dnsd_pid()
                os.kill(pid, signal.SIGKILL)  # the dnsd netcore started for this sandbox
                wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}"))
                figures["dnsd kills"] += 1
                killed = time.monotonic()
                box.exec("client", "true")  # netcore's next call restarts it
                outages.append((killed, time.monotonic()))
    open(stopfile, "w").close()
    probe.wait(timeout=30)
    with open(answers_path) as lines:
        answers = [json.loads(line) for line in lines]
    wrong, missing, unanswered = check_churn(answers, visible)
    during_outage = [a for a in answers if a[2] is None and any(start - 1 <= a[1] <= end for start, end in outages)]
    figures.update({
        "queries": len(answers), "answered": len(answers) - unanswered, "wrong answers": len(wrong),
        "missing while alive": len([m for m in missing if not any(s - 1 <= m[1] <= e for s, e in outages)]),
        "lost while dnsd was killed": len(during_outage), "lost otherwise": unanswered - len(during_outage),
        "dnsd rss start KiB": rss_start, "dnsd rss end KiB": rss_kib(box.dnsd_pid()),
    })
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--names", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("soak: run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    box = new_sandbox("ncsoak")
    try:
        figures = soak(box, args.seconds, args.names, random.Random(args.seed))
    finally:
        cleanup(box)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0 if figures["wrong answers"] == figures["lost otherwise"] == figures["missing while alive"] == 0 else 1


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
