"""dnsd's cluster record source (dnsd/sources/cluster.py): the store's records and the names file netcored writes
(netcore.dnsd_protocol.cluster_names), answered as one; a change of one remote container is a patch; a file
that cannot be read keeps the last names; without a file the source is the store itself."""

from __future__ import annotations

import json

from dnsd.core.answer import Answerer
from dnsd.core.stats import Stats
from dnsd.core.wire import NOERROR
from dnsd.reload import Reloader
from dnsd.sources.cluster import ClusterRecords
from netcore.dnsd_protocol import cluster_names
from netcore.model import Container, Endpoint

GATEWAY = "10.0.0.1"


def remote(name: str, ip: str, network_id: str, aliases=(), hostname: str | None = None, n: int = 0):
    container = Container(id=(name.encode().hex() + "0" * 64)[:64], name=name, hostname=hostname or name, netns="")
    endpoint = Endpoint(id=(f"e{name}".encode().hex() + "0" * 64)[:64], container_id=container.id,
                        network_id=network_id, ifname="", host_ifname="", mac="02:42:0a:00:00:03", ipv4=ip,
                        aliases=tuple(aliases))
    return container, [endpoint], "h2"


def ask(snapshot, dns, name, qtype="A", client="10.0.0.2", listener=GATEWAY):
    reply = Answerer(snapshot, ()).handle(dns.query(name, qtype), client, listener, False)
    if not isinstance(reply, bytes):
        return None  # not answered here (forwarded)
    return dns.rdata(reply) if reply[3] & 0x0F == NOERROR else []


async def test_without_a_names_file_the_source_is_the_store_itself(world, tmp_path):
    world.network("app", "10.0.0.0/24", GATEWAY)
    source = ClusterRecords(world, str(tmp_path))
    assert source.generation() == world.generation()
    world.container("a1", world.networks[0], "10.0.0.2")
    assert source.changes_since(2) == world.changes_since(2)


async def test_other_hosts_containers_are_answered_by_name_alias_hostname_network_and_ptr(world, dns, tmp_path):
    app = world.network("app", "10.0.0.0/24", GATEWAY)
    other = world.network("other", "10.89.0.0/24", "10.89.0.1")
    world.container("a1", app, "10.0.0.2", aliases=("api",))
    world.container("o1", other, "10.89.0.2")
    cluster_names.write(str(tmp_path), 1, [remote("r1", "10.0.0.3", app.id, ("api",), hostname="r1host"),
                                           remote("r2", "10.0.0.4", app.id, ("api",))])
    reloader = Reloader(ClusterRecords(world, str(tmp_path)), 0, Stats())
    snapshot = await reloader.reload()
    assert ask(snapshot, dns, "r1") == ["10.0.0.3"]
    assert ask(snapshot, dns, "r1host") == ["10.0.0.3"]
    assert ask(snapshot, dns, "r1.app") == ["10.0.0.3"]
    assert sorted(ask(snapshot, dns, "api")) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]  # an alias held across hosts
    assert ask(snapshot, dns, "3.0.0.10.in-addr.arpa", "PTR") == ["r1.app."]
    # isolation as on a bridge: a client of another network is not answered the overlay's names
    assert "10.0.0.3" not in (ask(snapshot, dns, "r1", client="10.89.0.2", listener="10.89.0.1") or [])


async def test_a_change_of_one_remote_container_is_a_patch_and_a_removed_file_takes_the_names_away(world, dns,
                                                                                                    tmp_path):
    app = world.network("app", "10.0.0.0/24", GATEWAY)
    world.container("a1", app, "10.0.0.2")
    state_dir = str(tmp_path)
    cluster_names.write(state_dir, 1, [remote("r1", "10.0.0.3", app.id), remote("r2", "10.0.0.4", app.id)])
    stats = Stats()
    reloader = Reloader(ClusterRecords(world, state_dir), 0, stats)
    await reloader.reload()
    assert await reloader.reload() is None  # nothing changed: nothing built
    cluster_names.write(state_dir, 2, [remote("r1", "10.0.0.3", app.id), remote("r3", "10.0.0.5", app.id)])
    full = stats.reloads_full
    snapshot = await reloader.reload()
    assert (stats.reloads_full, stats.reloads_patch) == (full, 1)
    assert ask(snapshot, dns, "r3") == ["10.0.0.5"]
    assert ask(snapshot, dns, "r2") in ([], None)
    world.container("a2", app, "10.0.0.6")  # a local change and a remote one together: one patch
    cluster_names.write(state_dir, 3, [remote("r1", "10.0.0.3", app.id)])
    snapshot = await reloader.reload()
    assert (stats.reloads_full, stats.reloads_patch) == (full, 2)
    assert ask(snapshot, dns, "a2") == ["10.0.0.6"] and ask(snapshot, dns, "r3") in ([], None)
    cluster_names.remove(state_dir)  # the host left its cluster
    snapshot = await reloader.reload()
    assert ask(snapshot, dns, "r1") in ([], None)
    assert ask(snapshot, dns, "a1") == ["10.0.0.2"]


async def test_a_file_that_cannot_be_read_keeps_the_names_last_read(world, dns, tmp_path, caplog):
    app = world.network("app", "10.0.0.0/24", GATEWAY)
    world.container("a1", app, "10.0.0.2")
    state_dir = str(tmp_path)
    cluster_names.write(state_dir, 1, [remote("r1", "10.0.0.3", app.id)])
    reloader = Reloader(ClusterRecords(world, state_dir), 0, Stats())
    await reloader.reload()
    with open(cluster_names.path(state_dir), "w") as f:
        f.write('{"v": 9, "containers": "a newer netcore"}')
    world.container("a2", app, "10.0.0.6")
    snapshot = await reloader.reload()
    assert ask(snapshot, dns, "r1") == ["10.0.0.3"] and ask(snapshot, dns, "a2") == ["10.0.0.6"]
    assert "answering the cluster's names last read" in caplog.text


def test_the_names_file_leaves_out_a_malformed_entry():
    good = cluster_names.encode(1, [remote("r1", "10.0.0.3", "a" * 64)])
    document = json.loads(good)
    document["containers"].append({"id": "x", "endpoints": [{"ipv4": 5}]})
    generation, attached = cluster_names.decode(json.dumps(document).encode())
    assert generation == 1 and [c.name for c, _ in attached] == ["r1"]
    assert attached[0][1][0].ifname == "eth0" and attached[0][1][0].host_ifname == ""
