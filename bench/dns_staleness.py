"""Time to see a change (issue 4): `netcore run` then an immediate lookup, `netcore rm` then another.

Run by bench/dns.sh inside its sandbox, after the benchmark (NETCORE_NETNS and
NETCORE_STATE_DIR in the environment). For each of --pairs new containers:

    netcore run --name staleN --net NET   -> at once, A staleN? must be its address
    netcore rm staleN                     -> at once, A staleN? must have no address

A stale answer is any other outcome (no reply, no record, a wrong address; after rm
any address). The lookups go to dnsd from inside --client-netns (a container).

What dnsd pays per change: its utime+stime (/proc/PID/stat) over each action, less
what it burns idle over the same time (its store poll), divided by the number of
actions. And the round trip of a `sync` on its control socket when nothing changed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time

from netcore.dnsd_protocol import OK, SYNC
from netcore.dnsd_protocol.control import DnsdControl
from netcore.system.linux import entered_netns, netns_path

NAME_PREFIX = "stale"  # not hex: cannot be mistaken for a container ID prefix


def ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def socket_in_netns(namespace: str) -> socket.socket:
    """A UDP socket that lives in `namespace`, while this process stays where it is."""
    with entered_netns(netns_path(namespace)):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


class Resolver:
    def __init__(self, sock: socket.socket, server: str, port: int):
        self.sock, self.server, self.port, self.qid = sock, server, port, 0
        sock.settimeout(1.0)

    def lookup(self, name: str) -> tuple[int | None, list[str]]:
        """(rcode, IPv4 addresses) of an A query; rcode None when no reply came."""
        self.qid = (self.qid + 1) & 0xFFFF
        question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
        self.sock.sendto(struct.pack("!HHHHHH", self.qid, 0x0100, 1, 0, 0, 0) + question, (self.server, self.port))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                reply = self.sock.recv(4096)
            except TimeoutError:
                break
            if len(reply) >= 12 and struct.unpack("!H", reply[:2])[0] == self.qid:
                return reply[3] & 0xF, _addresses(reply)
        return None, []


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += 1 + length


def _addresses(msg: bytes) -> list[str]:
    qdcount, ancount = struct.unpack("!HH", msg[4:8])
    pos = 12
    for _ in range(qdcount):
        pos = _skip_name(msg, pos) + 4
    found = []
    for _ in range(ancount):
        pos = _skip_name(msg, pos)
        rtype, _, _, rdlength = struct.unpack("!HHIH", msg[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlength == 4:
            found.append(socket.inet_ntoa(msg[pos:pos + 4]))
        pos += rdlength
    return found


def netcore(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "netcore", *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        sys.exit(f"dns_staleness: netcore {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def control_sync_ms(state_dir: str, count: int) -> list[float]:
    """Round trips of `sync` when nothing changed: the floor of what netcore waits for."""
    control = DnsdControl(state_dir, None)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        reply = control.request(SYNC)
        times.append((time.perf_counter() - start) * 1e3)
        if not reply or not reply.startswith(OK):
            sys.exit(f"dns_staleness: dnsd answered sync with {reply!r}")
    return times


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered):.1f}, p95 {p95:.1f}, max {ordered[-1]:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dns_staleness.py")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--network", required=True)
    parser.add_argument("--server", required=True, help="dnsd's address on the network (its gateway)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--client-netns", required=True, help="a container's namespace to query from")
    parser.add_argument("--dnsd-pid", type=int, required=True)
    parser.add_argument("--containers", type=int, default=0, help="containers already there (for the report)")
    parser.add_argument("--records", type=int, default=0, help="names already there (for the report)")
    args = parser.parse_args(argv)
    state_dir = os.environ["NETCORE_STATE_DIR"]
    clk_tck = os.sysconf("SC_CLK_TCK")
    resolver = Resolver(socket_in_netns(args.client_netns), args.server, args.port)

    # What dnsd burns doing nothing (its store poll), to subtract from the actions' cost.
    idle_start, idle_ticks = time.monotonic(), ticks(args.dnsd_pid)
    time.sleep(5)
    idle_rate = (ticks(args.dnsd_pid) - idle_ticks) / clk_tck / (time.monotonic() - idle_start)

    names = [f"{NAME_PREFIX}{i}" for i in range(args.pairs)]
    answers: dict[tuple[str, str], tuple[int | None, list[str]]] = {}
    expected: dict[str, str] = {}
    # Per phase: wall ms of each netcore command, dnsd CPU seconds and elapsed seconds in total.
    phases: dict[str, tuple[list[float], float, float]] = {"run": ([], 0.0, 0.0), "rm": ([], 0.0, 0.0)}
    # run, look up, rm, look up, one name after the other: at most one container more than
    # the benchmark had (a bridge takes 1023 ports, and the benchmark may have used 1001).
    for name in names:
        for phase in ("run", "rm"):
            before_ticks, start = ticks(args.dnsd_pid), time.monotonic()
            if phase == "run":
                netcore("run", "--name", name, "--net", args.network, "-d")
            else:
                netcore("rm", name)
            took = time.monotonic() - start
            dnsd_cpu = (ticks(args.dnsd_pid) - before_ticks) / clk_tck
            answers[(phase, name)] = resolver.lookup(name)  # at once, no sleep, no retry
            wall, cpu_s, elapsed = phases[phase]
            wall.append(took * 1e3)
            phases[phase] = (wall, cpu_s + dnsd_cpu, elapsed + took)
            if phase == "run":  # the address it really got, to check the answer
                document = json.loads(netcore("inspect", name).stdout)[0]
                expected[name] = document["NetworkSettings"]["Networks"][args.network]["IPAddress"]

    stale_run = [n for n in names if answers[("run", n)][1] != [expected[n]]]
    stale_rm = [n for n in names if answers[("rm", n)][1]]
    lines = [f"Time to see a change: {args.pairs} pairs at {args.containers} containers, {args.records} names "
             f"(dnsd idle CPU {idle_rate * 1e3:.1f} ms/s over 5 s, subtracted below; raw in parentheses)"]
    for phase, stale in (("run", stale_run), ("rm", stale_rm)):
        wall, cpu_s, elapsed = phases[phase]
        dnsd_ms = max(0.0, cpu_s - idle_rate * elapsed) * 1e3 / len(names)
        raw_ms = cpu_s * 1e3 / len(names)
        rcodes = sorted({str(answers[(phase, n)][0]) for n in names})
        lines.append(f"  netcore {phase:<3} then lookup: {len(stale)} stale of {len(names)}"
                     f"{' (first: ' + ', '.join(stale[:5]) + ')' if stale else ''}; rcodes {','.join(rcodes)}; "
                     f"dnsd CPU per {phase}: {dnsd_ms:.2f} ms ({raw_ms:.2f}); "
                     f"netcore {phase} wall ms: {_summary(wall)}")
    lines.append(f"  control socket sync with nothing changed, ms: {_summary(control_sync_ms(state_dir, 50))}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
