"""The etcd leader killed under a stream of writes: how long writes stop, with netcore's endpoint rotation
(``netcore.cluster.store.EtcdStore``) against aetcd on the gRPC multi-address target (``ipv4:A:P1,B:P2,...``).

    .venv/bin/python bench/cluster_failover.py [--runs 3] [--puts 250] [--deadline 1]

Each run starts a throwaway 3-member etcd on 127.0.0.1 (tests/support/etcd_cluster.py), puts ``--puts``
keys at 50 a second through the client under test with the leader as its first endpoint (the worst case:
its own member dies), kills the leader after 50 puts, and reports the longest gap between two successful
puts and how many puts failed (after the client's own retries). The members are killed and the data
directory removed at the end of each run. Traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from netcore.cluster.store import EtcdStore
from tests.support.etcd_cluster import EtcdCluster

PERIOD = 0.02  # 50 puts a second


async def burst(put, kill, count: int) -> tuple[float, int]:
    last_ok, gap, failed = time.monotonic(), 0.0, 0
    for i in range(count):
        if i == 50:
            kill()
        started = time.monotonic()
        try:
            await put(i)
            now = time.monotonic()
            gap, last_ok = max(gap, now - last_ok), now
        except Exception:  # noqa: BLE001 (any failure of the client under test counts as a failed put)
            failed += 1
        await asyncio.sleep(max(0.0, PERIOD - (time.monotonic() - started)))
    return gap, failed


async def grpc_target(endpoints: list[str], deadline: float):
    import aetcd

    host = "ipv4:" + ",".join(endpoints[:-1]) + "," + endpoints[-1].rsplit(":", 1)[0]
    options = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.min_reconnect_backoff_ms": 100,
               "grpc.max_reconnect_backoff_ms": 1000}
    client = aetcd.Client(host=host, port=int(endpoints[-1].rsplit(":", 1)[1]), timeout=deadline, options=options)

    async def put(i):
        await client.put(b"/bench/target/%d" % i, b"v")

    return client.close, put


async def rotation(endpoints: list[str], deadline: float):
    store = EtcdStore([(h, int(p)) for h, p in (e.rsplit(":", 1) for e in endpoints)], op_timeout=deadline,
                      call_timeout=deadline * 3)

    async def put(i):
        await store.put(f"/bench/rotation/{i}", b"v")  # StoreUnavailable once its call_timeout is spent

    return store.close, put


async def one_run(kind: str, count: int, deadline: float) -> tuple[float, int]:
    cluster = EtcdCluster(3)
    try:
        cluster.start()
        leader = cluster.leader()
        order = [leader.endpoint] + [m.endpoint for m in cluster.members if m is not leader]
        close, put = await (grpc_target if kind == "grpc target" else rotation)(order, deadline)
        try:
            await put(-1)
            return await burst(put, lambda: cluster.kill(leader), count)
        finally:
            await close()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--puts", type=int, default=250)
    parser.add_argument("--deadline", type=float, default=1.0, help="seconds per attempt")
    args = parser.parse_args()
    print(f"{'client':<14} {'run':>3} {'longest gap (ms)':>17} {'failed puts':>12}")
    for run in range(1, args.runs + 1):
        for kind in ("grpc target", "rotation"):
            gap, failed = asyncio.run(one_run(kind, args.puts, args.deadline))
            print(f"{kind:<14} {run:>3} {gap * 1000:>17.0f} {failed:>12}")


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    main()
