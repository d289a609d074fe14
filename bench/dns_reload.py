"""What one change costs dnsd: a full snapshot build versus a patch, the store reads, memory, the query path.

    .venv/bin/python bench/dns_reload.py [--containers 10000] [--repeat 30]

No root, no network: records are made in memory (N containers ``c0``..``cN-1``
on one network, ``web`` an alias of three of them, a second network to
connect to), and the store part fills a SQLite store in a temporary dir in
one transaction. Times are medians (and maxima) over ``--repeat`` rounds of
each operation; each round undoes itself, so every round patches the same
world. Memory is what tracemalloc sees after a build: the snapshot alone,
and the snapshot with the builder state a server keeps to patch it; and
what it costs in RSS, measured in fresh child processes that do what dnsd
does (read the store in a reload thread, build or patch, give free memory
back), at 100 containers and more: the growth per 1,000 containers.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import ipaddress
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import dnslib

from dnsd.core.answer import Answerer
from dnsd.core.builder import SnapshotBuilder, build_snapshot
from dnsd.core.snapshot import Snapshot
from netcore.model import Attached, Container, Endpoint, Network, group_by_container
from netcore.store import Store


def _hex_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclasses.dataclass
class World:
    networks: list[Network]
    containers: list[Container]
    endpoints: list[Endpoint]

    @classmethod
    def make(cls, count: int) -> World:
        big = Network(id=_hex_id("net/big"), name="bench", bridge="br-bench", subnet="10.90.0.0/16",
                      gateway="10.90.0.1")
        other = Network(id=_hex_id("net/other"), name="other", bridge="br-other", subnet="10.91.0.0/24",
                        gateway="10.91.0.1")
        world = cls([big, other], [], [])
        hosts = ipaddress.ip_network(big.subnet).hosts()
        next(hosts)  # the gateway's
        for index in range(count):
            world.run(f"c{index}", big, str(next(hosts)), ("web",) if index < 3 else ())
        return world

    def run(self, name: str, network: Network, ipv4: str, aliases: tuple[str, ...] = ()) -> Container:
        container_id = _hex_id(f"container/{name}")  # the hostname is the short ID, as netcore makes it
        container = Container(id=container_id, name=name, hostname=container_id[:12], netns=f"ns-{name}")
        self.containers.append(container)
        self.connect(container, network, ipv4, aliases)
        return container

    def connect(self, container: Container, network: Network, ipv4: str, aliases: tuple[str, ...] = ()) -> Endpoint:
        index = sum(1 for e in self.endpoints if e.container_id == container.id)
        endpoint = Endpoint(id=_hex_id(f"endpoint/{container.name}/{network.name}"), container_id=container.id,
                            network_id=network.id, ifname=f"eth{index}", host_ifname=f"veth{container.id[:7]}{index}",
                            mac="02:42:00:00:00:00", ipv4=ipv4, aliases=aliases)
        self.endpoints.append(endpoint)
        return endpoint

    def records_of(self, container_id: str) -> list[Attached]:
        """What Store.container_records gives for one container (found by scanning: not part of the timing)."""
        return group_by_container([c for c in self.containers if c.id == container_id], self.endpoints)

    def attached(self) -> list[Attached]:
        return group_by_container(self.containers, self.endpoints)


def _read_all(reader: Store) -> None:
    with reader.dns_records() as (_, containers):
        for _ in containers:
            pass


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1e3


def measure_patches(world: World, repeat: int) -> dict[str, list[float]]:
    """ms per patch of each operation, each round undone by a second patch (not counted)."""
    big, other = world.networks
    builder = SnapshotBuilder()
    builder.build(world.networks, world.attached())
    times: dict[str, list[float]] = {"run (add a container)": [], "rm (remove a container)": [],
                                     "connect (second network)": [], "disconnect": []}

    def patch(container_id: str) -> float:
        attached = world.records_of(container_id)  # what the store gives, measured apart
        return _timed(lambda: builder.patch({container_id}, attached))

    for round_ in range(repeat):
        fresh = world.run(f"fresh{round_}", big, f"10.90.250.{round_ % 250 + 1}")
        times["run (add a container)"].append(patch(fresh.id))
        world.containers.remove(fresh)
        world.endpoints = world.endpoints[:-1]
        times["rm (remove a container)"].append(patch(fresh.id))

        target = world.containers[round_ % len(world.containers)]
        world.connect(target, other, f"10.91.0.{round_ % 250 + 2}")
        times["connect (second network)"].append(patch(target.id))
        world.endpoints = world.endpoints[:-1]
        times["disconnect"].append(patch(target.id))
    return times


def measure_store(world: World, repeat: int) -> dict[str, list[float]]:
    """ms of the reads a patch needs from a real SQLite store (and of the full read a rebuild needs)."""
    big, _ = world.networks
    times: dict[str, list[float]] = {"store: changes_since + container_records": [], "store: dns_records (all)": []}
    with tempfile.TemporaryDirectory() as state_dir:
        store = Store.open(state_dir)
        with store.transaction():
            for record in world.networks + world.containers + world.endpoints:
                store.insert(record)
        reader = Store.open_readonly(state_dir)
        for round_ in range(repeat):
            seen = reader.generation()
            fresh = Container(id=_hex_id(f"container/stored{round_}"), name=f"stored{round_}",
                              hostname=f"stored{round_}", netns="ns")
            with store.transaction():
                store.insert(fresh)
                store.insert(Endpoint(id=_hex_id(f"endpoint/stored{round_}"), container_id=fresh.id,
                                      network_id=big.id, ifname="eth0", host_ifname=f"vethst{round_}",
                                      mac="02:42:00:00:00:00", ipv4=f"10.90.251.{round_ + 1}"))
            start = time.perf_counter()
            _, changed = reader.changes_since(seen)
            reader.container_records(changed)
            times["store: changes_since + container_records"].append((time.perf_counter() - start) * 1e3)
        for _ in range(max(3, repeat // 10)):
            times["store: dns_records (all)"].append(_timed(lambda: _read_all(reader)))
        reader.close()
        store.close()
    return times


def measure_memory(count: int) -> tuple[float, float]:
    """MB per 1,000 containers: the snapshot alone, and the snapshot with its builder's state."""
    world = World.make(count)
    results = []
    for keep_builder in (False, True):
        gc.collect()
        tracemalloc.start()
        builder = SnapshotBuilder()
        snapshot = builder.build(world.networks, world.attached())
        if not keep_builder:
            del builder
        gc.collect()
        size, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del snapshot
        results.append(size / 1e6 / count * 1000)
    return results[0], results[1]


RSS_BASE = 100  # containers: RSS growth is measured from here, so the cost of the first names does not count


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def rss_child(state_dir: str, mode: str) -> None:
    """In a fresh process: KiB of RSS one full build (mode 'build') or one patch per container ('patch') adds."""
    from concurrent.futures import ThreadPoolExecutor

    import dnsd.server  # noqa: F401  (everything dnsd imports is loaded before the first reading)
    from netcore.system.linux import release_free_memory

    reader = Store.open_readonly(state_dir)
    reload_thread = ThreadPoolExecutor(max_workers=1)
    builder = SnapshotBuilder()

    def build() -> Snapshot:
        with reader.dns_records() as (networks, containers):
            if mode == "build":
                snapshot = builder.build(networks, containers)
            else:
                snapshot = builder.build(networks, [])
                for container, endpoints in containers:
                    snapshot = builder.patch({container.id}, [(container, endpoints)])
        release_free_memory()
        return snapshot

    reload_thread.submit(reader.generation).result()
    gc.collect()
    release_free_memory()
    before = _rss_kib()
    answerer = Answerer(reload_thread.submit(build).result())
    gc.collect()
    print(_rss_kib() - before, len(answerer.snapshot.clients))


def measure_rss(counts: list[int], runs: int = 3) -> dict[str, dict[int, float]]:
    """MB of RSS a full build and one patch per container add, per count of containers (medians of ``runs``)."""
    results: dict[str, dict[int, float]] = {"build": {}, "patch": {}}
    for count in counts:
        world = World.make(count)
        with tempfile.TemporaryDirectory() as state_dir:
            store = Store.open(state_dir)
            with store.transaction():
                for record in world.networks + world.containers + world.endpoints:
                    store.insert(record)
            store.close()
            for mode in results:
                grown = []
                for _ in range(runs):
                    output = subprocess.run([sys.executable, __file__, "--rss-child", state_dir, mode],
                                            check=True, capture_output=True, text=True).stdout.split()
                    assert int(output[1]) == count, output  # every container was read
                    grown.append(int(output[0]) / 1024)
                results[mode][count] = statistics.median(grown)
    return results


def measure_queries(world: World) -> dict[str, float]:
    """µs per Answerer.handle, best of 5 rounds of 50,000."""
    answerer = Answerer(build_snapshot(world.networks, world.containers, world.endpoints))
    client, stranger, gateway = world.endpoints[5].ipv4, "10.90.255.200", world.networks[0].gateway
    cases = {"container asks c7": ("c7", client), "container asks web (rotating)": ("web", client),
             "stranger asks c7": ("c7", stranger), "container asks a missing name": ("nothere", client)}
    results = {}
    for label, (name, source) in cases.items():
        query = bytes(dnslib.DNSRecord.question(name).pack())
        handle = answerer.handle
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(50_000):
                handle(query, source, gateway, False)
            best = min(best, (time.perf_counter() - start) / 50_000 * 1e6)
        results[label] = best
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rss-child", nargs=2, metavar=("STATE_DIR", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(*args.rss_child)
        return

    world = World.make(args.containers)
    full = [_timed(lambda: SnapshotBuilder().build(world.networks, world.attached()))
            for _ in range(3)]
    patches = measure_patches(world, args.repeat)
    store_reads = measure_store(world, args.repeat)
    full_ms = statistics.median(full)

    print(f"dnsd snapshot reload, {args.containers:,} containers on one network, alias 'web' on 3 of them; "
          f"medians of {args.repeat} rounds (3 for the full build)")
    print()
    print(f"{'what':42}  {'median ms':>9}  {'max ms':>8}  {'vs full build':>13}")
    print(f"{'-' * 42}  {'-' * 9}  {'-' * 8}  {'-' * 13}")
    print(f"{'full build (the old way, every change)':42}  {full_ms:9.2f}  {max(full):8.2f}  {'1':>13}")
    for label, times in {**patches, **store_reads}.items():
        median = statistics.median(times)
        print(f"{label:42}  {median:9.3f}  {max(times):8.3f}  {f'1/{full_ms / median:,.0f}':>13}")
    print()
    print(f"{'containers':>10}  {'snapshot MB/1000':>16}  {'+ builder MB/1000':>17}")
    for count in sorted({1_000, args.containers}):
        alone, with_builder = measure_memory(count)
        print(f"{count:>10,}  {alone:16.2f}  {with_builder:17.2f}")
    print()
    counts = sorted({RSS_BASE, 1_000, args.containers})
    rss = measure_rss(counts)
    print(f"dnsd RSS growth (fresh processes, medians of 3): MB added, and MB per 1,000 containers past {RSS_BASE}")
    print(f"{'how the containers came':36}" + "".join(f"  {f'{count:,} ctrs':>10}" for count in counts)
          + "".join(f"  {f'/1000 @{count:,}':>12}" for count in counts if count > RSS_BASE))
    labels = {"build": "full build (dnsd start, netcore up)", "patch": "one patch each (netcore run)"}
    for mode, grown in rss.items():
        print(f"{labels[mode]:36}" + "".join(f"  {grown[count]:10.2f}" for count in counts)
              + "".join(f"  {(grown[count] - grown[RSS_BASE]) / (count - RSS_BASE) * 1000:12.2f}"
                        for count in counts if count > RSS_BASE))
    print()
    print(f"{'query (Answerer.handle)':32}  {'us':>6}")
    for label, micros in measure_queries(world).items():
        print(f"{label:32}  {micros:6.2f}")


if __name__ == "__main__":
    main()
