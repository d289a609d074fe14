"""A UDP listener's choices in simulation: lone reads, batches and pauses at each offered rate, with no real time.

    .venv/bin/python bench/udp_decisions.py [--code DIR] [--cost US] [--wake US]

Drives ``dnsd.io.udp.serve`` of DIR's dnsd (default: the one this python imports, .venv's checkout; DIR goes first
on PYTHONPATH, bench/_checkout.py) on a simulated socket and clock: a lone query is answered in ``--cost`` µs
(4), and a read that waited for its datagram returns ``--wake`` µs (10) after it arrived (the thread's wake-up),
as on a quiet machine. The compiled loop is stood in for by its contract (the
time between reads before 18f266c, the kernel's arrival times since), replaying nothing. Arrivals: evenly spaced,
and in clumps of five 1 µs apart (dnsperf -Q sends in clumps), from 1,000 to 125,000 queries a second, open loop.
Per case: the share of queries read alone, the batches (their average size), the pauses (the longest) and the
average time from a datagram's arrival to its read. Deterministic: the same table on any machine, under any
load, so two codes' choices compare where a timed run cannot (issue 23: the machine is shared). No root.
"""

from __future__ import annotations

import argparse
import bisect
import os
import socket
import sys
import threading
import types

from _checkout import run_from

RATES = (1000, 2000, 5000, 10000, 20000, 50000, 80000, 125000)


class Simulated:
    """A socket, its queue and a clock; the interface ``serve`` reads of a ``DatagramBatch`` (see the docstring)."""

    def __init__(self, udp, arrivals: list[float], cost: float, wake: float):
        self.arrivals, self.cost, self.wake = arrivals, cost, wake
        self.now = 0.0
        self.taken = self.count = self.lone_reads = 0
        self.first = 0.0
        self.batches: list[int] = []
        self.pauses: list[float] = []
        self.waits: list[float] = []  # arrival to read, per datagram
        self.stopping = threading.Event()
        self.fd, self.family, self.size = -1, socket.AF_INET, udp.BATCH
        self.lone = bytearray(16)
        self.lone_view = memoryview(self.lone)
        self.sock = self

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def _wait_for_one(self) -> bool:
        if self.taken == len(self.arrivals):
            self.stopping.set()
            return False
        if self.arrivals[self.taken] > self.now:
            self.now = self.arrivals[self.taken] + self.wake
        return True

    def _take_one(self) -> float:
        arrived = self.arrivals[self.taken]
        self.waits.append(self.now - arrived)
        self.taken += 1
        self.lone_reads += 1
        return arrived

    def recvfrom_into(self, buffer):  # the socket module's lone read
        if not self._wait_for_one():
            return 0, None
        self._take_one()
        return 1, ("10.0.0.2", 5353)

    def replay_arrivals(self, fd, buffer, cell, quiet, last, run, stats, patience):  # since 18f266c
        asked = self.now
        if not self._wait_for_one():
            return 0, None, None, self.now, 0, last
        arrived = self._take_one()
        run = run + 1 if arrived <= asked or arrived - last <= quiet else 0
        return 1, ("10.0.0.2", 5353), None, self.now, run, arrived

    def replay_reads(self, fd, buffer, cell, quiet, last, run, stats, patience):  # before: the time between reads
        if not self._wait_for_one():
            return 0, None, None, self.now, 0
        self._take_one()
        return 1, ("10.0.0.2", 5353), None, self.now, 0 if self.now - last > quiet else run + 1

    def sendto(self, data, flags, client) -> None:
        pass

    def receive(self) -> int:
        if not self._wait_for_one():
            return 0
        queued = bisect.bisect_right(self.arrivals, self.now, lo=self.taken) - self.taken
        self.first = self.arrivals[self.taken]
        self.count = min(self.size, queued)
        self.waits.extend(self.now - arrival for arrival in self.arrivals[self.taken:self.taken + self.count])
        self.taken += self.count
        self.batches.append(self.count)
        return self.count

    def first_arrival(self) -> float:
        return self.first

    def answer_all(self, answer, forward) -> int:
        for _ in range(self.count):
            answer(b"q", "10.0.0.2")
        return self.count

    def answer(self, data: bytes, ip: str) -> bytes:
        self.now += self.cost
        return b"r"


def simulate(udp, stats_type, arrivals: list[float], cost: float, wake: float) -> Simulated:
    simulated = Simulated(udp, arrivals, cost, wake)
    udp.time = types.SimpleNamespace(monotonic=simulated.monotonic, time=simulated.monotonic, sleep=simulated.sleep)
    udp.set_timer_slack = lambda seconds: None
    arrival_times = hasattr(udp, "leaves_batches")
    udp._replay = types.SimpleNamespace(replay=simulated.replay_arrivals if arrival_times else simulated.replay_reads)
    udp.serve(simulated, simulated.answer, lambda *_: None, simulated.stopping, udp.DEFAULT_WINDOW, stats_type(),
              [{}], lambda key, ip: None)
    return simulated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", metavar="DIR",
                        help="the checkout whose dnsd UDP listener is simulated (default: the one this python imports)")
    parser.add_argument("--cost", type=float, default=4.0, help="µs to answer a query (default 4)")
    parser.add_argument("--wake", type=float, default=10.0, help="µs from an awaited datagram to its read (10)")
    args = parser.parse_args()
    run_from(args.code)  # --code DIR: this command again, with DIR first on PYTHONPATH
    try:  # the checkout asked for, once it is first on the path; dnsd by layer (issue 25), else a flat one
        from dnsd.core.stats import Stats
        from dnsd.io import udp
    except ImportError:
        from dnsd.stats import Stats

        from dnsd import udp

    contract = "arrival times" if hasattr(udp, "leaves_batches") else "time between reads"
    checkout = os.path.dirname(os.path.abspath(udp.__file__))
    while os.path.basename(checkout) != "dnsd":
        checkout = os.path.dirname(checkout)
    checkout = os.path.dirname(checkout)
    print(f"dnsd's udp of {checkout} ({contract}); a query answered in {args.cost:g} us, a wake-up {args.wake:g} us")
    print(f"{'q/s':>7}  {'arrivals':11}  {'alone':>6}  {'batches':>7}  {'avg':>5}  {'pauses':>6}  {'longest':>8}  "
          f"{'arrival to read':>15}")
    for rate in RATES:
        count = max(2000, rate // 5)
        for shape in ("even", "clumps of 5"):
            if shape == "even":
                arrivals = [n / rate for n in range(count)]
            else:
                arrivals = [clump * 5 / rate + n * 1e-6 for clump in range(count // 5) for n in range(5)]
            run = simulate(udp, Stats, arrivals, args.cost * 1e-6, args.wake * 1e-6)
            batches = run.batches
            print(f"{rate:>7,}  {shape:11}  {100 * run.lone_reads / count:5.1f}%  {len(batches):>7}  "
                  f"{(sum(batches) / len(batches)) if batches else 0:5.1f}  {len(run.pauses):>6}  "
                  f"{max(run.pauses, default=0) * 1e6:6.0f}us  {sum(run.waits) / len(run.waits) * 1e6:13.1f}us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
