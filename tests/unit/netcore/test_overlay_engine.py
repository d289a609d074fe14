"""Overlay networks through the engine (netcore.engine.overlay), three hosts on one FakeClusterStore, each with its
own state dir and in-memory kernel, without root or etcd: join and leave, create/ls/inspect/rm from any host,
containers on it from any host with cluster-wide addresses, the data plane and the names handed on, a network
built on a host only while a container of it runs there, and every refusal in one line that changes nothing."""

from __future__ import annotations

import os
import re
import time

import pytest

from netcore import network as drivers
from netcore.cluster import keys
from netcore.cluster.dataplane import RemoteEndpoint
from netcore.cluster.fake_store import FakeClusterStore
from netcore.cluster.service import LoopThread
from netcore.dnsd_protocol import cluster_names
from netcore.engine.cluster import ClusterOptions
from netcore.errors import Conflict, NetcoreError, NotFound
from netcore.model import OPT_MTU
from netcore.network.overlay import OPT_VNI, bridge_name, vxlan_name
from netcore.ports import parse_publish
from netcore.requests import Attachment, ContainerSpec
from tests.support.engine_calls import connect_container, create_network, run_container
from tests.support.fake_kernel import FakeKernel, Namespace, World

URL = "etcd://fake:2379"


class FakePlane:
    """A VXLAN device's entries, kept per (namespace, device) in ``planes``."""

    def __init__(self, planes: dict, key):
        self.planes, self.key = planes, key

    def reconcile(self, remotes):
        self.planes[self.key] = sorted(remotes)

    def close(self):
        pass


class Host:
    def __init__(self, n: int, root, store, loop, planes):
        self.n, self.name, self.address = n, f"h{n}", f"192.0.2.1{n}"
        self.world = World(str(root / f"state{n}"))
        self.world.kernel = FakeKernel("gw")
        self.world.kernel.namespaces["gw"] = Namespace()
        self.world.kernel.add_physical("ul0", mtu=1500, addresses=[f"{self.address}/24"])
        self.planes = planes
        options = ClusterOptions(store_factory=lambda endpoints: store, loop=loop, resync_interval=0.05,
                                 dataplane=lambda namespace, device: FakePlane(planes, (self.name, device)))
        self.engine = self.world.engine(cluster=options)

    def join(self, ttl: int = 3):
        return self.engine.join_cluster(URL, self.address, self.name, ttl)

    def names(self) -> set[str]:
        found = cluster_names.read(self.engine.state_dir)
        return {container.name for container, _ in found[1]} if found else set()

    def entries(self, network_id: str) -> list[RemoteEndpoint]:
        return self.planes.get((self.name, vxlan_name(network_id)), [])


@pytest.fixture
def hosts(tmp_path):
    loop = LoopThread("test-cluster")
    store = FakeClusterStore()
    planes: dict = {}
    made = [Host(n, tmp_path, store, loop, planes) for n in (1, 2, 3)]
    made_store = store
    try:
        yield made, made_store, loop
    finally:
        for host in made:
            host.engine.close()
            host.world.close()
        loop.stop()


def eventually(predicate, timeout: float = 5.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        time.sleep(0.01)


def on_loop(loop, function):
    async def call():
        function()
    loop.call(call())


def test_an_overlay_network_is_seen_from_every_host_and_built_only_where_a_container_runs(hosts):
    (h1, h2, h3), _, _ = hosts
    for host in (h1, h2, h3):
        host.join()
    network = create_network(h1.engine, "app", driver="overlay", options={"com.docker.network.driver.mtu": "1400"},
                             labels={"tier": "web"})
    assert network.driver == "overlay" and network.subnet == "10.0.0.0/24" and network.gateway == "10.0.0.1"
    assert int(network.options[OPT_VNI]) >= 4096
    for host in (h1, h2, h3):
        shown = {n.name: n for n in host.engine.networks_to_show()}
        assert shown["app"].id == network.id and drivers.scope(shown["app"].driver) == "global"
        assert host.engine.network_to_show("app").labels == {"tier": "web"}
    assert h1.engine.store.find_network("app") is None  # built on no host yet
    assert not h1.world.kernel.gateway_links("vxlan")
    with pytest.raises(Conflict, match="network name 'app' is in use by an overlay network"):
        create_network(h2.engine, "app", driver="overlay")
    with pytest.raises(Conflict, match="an overlay network of the cluster"):
        create_network(h3.engine, "app")  # a local network may not take an overlay's name
    with pytest.raises(Conflict, match="overlay network app of the cluster"):
        create_network(h3.engine, "lan", subnets=["10.0.0.0/16"])  # nor its subnet


def test_containers_on_every_host_get_unique_addresses_entries_and_names_and_leave_nothing(hosts):
    (h1, h2, h3), store, _ = hosts
    for host in (h1, h2, h3):
        host.join()
    network = create_network(h1.engine, "app", driver="overlay")
    web = run_container(h1.engine, "web", net="app", aliases=["api"])
    db = run_container(h2.engine, "db", net="app", aliases=["api"], ip="10.0.0.9")
    cache = run_container(h3.engine, "cache", net="app", hostname="redis")
    addresses = {c.name: h.engine.store.endpoints_of_container(c.id)[0].ipv4
                 for h, c in ((h1, web), (h2, db), (h3, cache))}
    assert addresses == {"web": "10.0.0.2", "db": "10.0.0.9", "cache": "10.0.0.3"}
    # each host built the network: a bridge and a VXLAN device of the cluster's ID, MTU underlay - 50
    for host in (h1, h2, h3):
        links = host.world.kernel.gateway.links
        vxlan = links[vxlan_name(network.id)]
        assert vxlan.kind == "vxlan" and vxlan.vxlan == (int(network.options[OPT_VNI]), host.address, 4789)
        assert vxlan.master == bridge_name(network.id) and vxlan.mtu == 1450
        assert links[bridge_name(network.id)].addresses == ["10.0.0.1/24"]
        assert host.engine.store.network("app").options[OPT_MTU] == "1450"
    veth = h1.world.kernel.gateway_links("veth")
    assert [link.mtu for link in veth.values()] == [1450]
    # every host's data plane reaches the other two, and their names are handed to its dnsd
    eventually(lambda: h1.names() == {"db", "cache"} and h2.names() == {"web", "cache"}, what="names")
    eventually(lambda: [e.ip for e in h1.entries(network.id)] == ["10.0.0.3", "10.0.0.9"], what="h1 entries")
    assert {e.vtep for e in h1.entries(network.id)} == {"192.0.2.12", "192.0.2.13"}
    # network rm refuses while any host has a container on it, naming them with their hosts
    with pytest.raises(Conflict) as refused:
        h2.engine.remove_network("app")
    assert str(refused.value) == "network app is in use by cache (host h3), db (host h2), web (host h1)"
    assert h1.engine.remove_containers(["web"])
    eventually(lambda: h2.names() == {"cache"}, what="web gone from h2")
    assert [e.ip for e in h2.entries(network.id)] == ["10.0.0.3"]
    # h1's last container left: h1 removed the network's bridge and VXLAN device and its row
    assert h1.engine.store.find_network("app") is None
    assert vxlan_name(network.id) not in h1.world.kernel.gateway.links
    assert bridge_name(network.id) not in h1.world.kernel.gateway.links
    assert "app" in {n.name for n in h1.engine.networks_to_show()}  # still the cluster's
    h2.engine.remove_containers(["db"])
    h3.engine.remove_containers(["cache"])
    h3.engine.remove_network("app")
    assert not any(n.name == "app" for host in (h1, h2, h3) for n in host.engine.networks_to_show())
    for host in (h1, h2, h3):
        host.engine.leave_cluster()
    assert store.data == {}, sorted(store.data)


def test_connect_disconnect_and_ports_on_an_overlay_network(hosts):
    (h1, h2, _), _, _ = hosts
    h1.join()
    h2.join()
    create_network(h1.engine, "app", driver="overlay")
    create_network(h1.engine, "lan")
    run_container(h1.engine, "site", net="app", publish=[parse_publish("8080:80")])
    assert [(b.host_port, b.container_port) for b in h1.engine.store.ports()] == [(8080, 80)]
    run_container(h1.engine, "box", net="lan")
    connect_container(h1.engine, "app", "box", aliases=["side"])
    eventually(lambda: h2.names() == {"site", "box"})
    h1.engine.disconnect("app", "box")
    eventually(lambda: h2.names() == {"site"})


def test_refusals_are_one_line_and_change_nothing(hosts):
    (h1, h2, _), store, loop = hosts
    with pytest.raises(NetcoreError, match=r"^network create -d overlay: this host has not joined a cluster"):
        create_network(h1.engine, "app", driver="overlay")
    with pytest.raises(NetcoreError, match=re.escape("advertise address 192.0.2.99 is not an address of this host")):
        h1.engine.join_cluster(URL, "192.0.2.99", "h1", 3)
    with pytest.raises(NetcoreError, match="bad store URL 'http://fake:2379'"):
        h1.engine.join_cluster("http://fake:2379", h1.address, "h1", 3)
    with pytest.raises(NetcoreError, match="invalid lease TTL 0"):
        h1.engine.join_cluster(URL, h1.address, "h1", 0)
    on_loop(loop, store.down)
    with pytest.raises(NetcoreError, match=r"^cluster store etcd://fake:2379 unreachable"):
        h1.engine.join_cluster(URL, h1.address, "h1", 3)
    on_loop(loop, store.up)
    assert not os.path.exists(os.path.join(h1.engine.state_dir, "cluster.json")) and store.data == {}
    h1.join()
    with pytest.raises(Conflict, match="this host already joined cluster etcd://fake:2379 as h1"):
        h1.join()
    h2.join()
    create_network(h2.engine, "lan2", subnets=["10.0.5.0/24"])
    eventually(lambda: "10.0.5.0/24" in keys.decode(store.data[keys.host_key("h2")].value,
                                                    keys.HostRecord).record.local_subnets, what="h2 published")
    with pytest.raises(Conflict, match=re.escape("overlaps 10.0.5.0/24 of a local network of host h2")):
        create_network(h1.engine, "app", driver="overlay", subnets=["10.0.5.0/25"])
    with pytest.raises(NetcoreError, match="at most 1450"):
        create_network(h1.engine, "app", driver="overlay", options={"com.docker.network.driver.mtu": "1451"})
    with pytest.raises(NetcoreError, match="IPv4 only"):
        create_network(h1.engine, "app", driver="overlay", ipv6=True)
    assert not [k for k in store.data if k.startswith(keys.NETWORKS)]
    # a run that fails after its address was claimed gives the address back and builds nothing
    create_network(h1.engine, "app", driver="overlay")
    with pytest.raises(NotFound):
        h1.engine.run(ContainerSpec(name="x", networks=(Attachment("app"), Attachment("nowhere"))))
    assert not [k for k in store.data if k.startswith(keys.ADDRESSES)]
    assert h1.engine.store.find_network("app") is None and not h1.world.kernel.gateway_links("vxlan")
    run_container(h1.engine, "web", net="app")
    with pytest.raises(Conflict, match="cannot leave the cluster: containers on overlay networks run here: web"):
        h1.engine.leave_cluster()


def test_a_store_down_keeps_local_work_going_and_fails_overlay_runs_in_one_line(hosts):
    (h1, h2, _), store, loop = hosts
    h1.join()
    h2.join()
    create_network(h1.engine, "app", driver="overlay")
    run_container(h1.engine, "web", net="app")
    eventually(lambda: h2.names() == {"web"})
    on_loop(loop, store.down)
    create_network(h2.engine, "lan")
    run_container(h2.engine, "local", net="lan")
    started = time.monotonic()
    with pytest.raises(NetcoreError, match=r"^cluster store etcd://fake:2379 unreachable"):
        run_container(h2.engine, "db", net="app")
    assert time.monotonic() - started < 10
    assert h2.engine.store.find_container("db") is None
    assert h2.names() == {"web"}  # dnsd keeps the last names it knew
    on_loop(loop, store.up)
    eventually(lambda: keys.local_name_key("lan", "h2") in store.data, what="h2's local name published")
    run_container(h2.engine, "db", net="app")
    eventually(lambda: h1.names() == {"db"})


def test_leaving_removes_every_key_of_the_host_and_the_names_of_the_others(hosts):
    (h1, h2, _), store, _ = hosts
    h1.join()
    h2.join()
    create_network(h2.engine, "lan")
    create_network(h1.engine, "app", driver="overlay")
    run_container(h1.engine, "web", net="app")
    eventually(lambda: h2.names() == {"web"})
    h2.engine.leave_cluster()
    assert not [k for k in store.data if "h2" in k]
    assert not os.path.exists(cluster_names.path(h2.engine.state_dir))
    assert h2.engine.cluster_status() is None


def test_network_ls_shows_the_global_scope_and_prune_leaves_the_clusters_networks(hosts):
    import argparse
    import io

    from netcore.cli import commands

    (h1, h2, _), _, _ = hosts
    h1.join()
    h2.join()
    create_network(h2.engine, "app", driver="overlay")
    create_network(h1.engine, "idle")
    with h1.engine.action():
        h1.engine.overlays.ensure_local("app")  # built here with no container: what a run killed midway leaves
    out = io.StringIO()
    commands.network_ls(h1.engine, argparse.Namespace(quiet=False, format="{{.Name}} {{.Scope}}",
                                                      filter=["scope=global"], no_trunc=False), out)
    assert out.getvalue() == "app global\n"
    out = io.StringIO()
    commands.network_prune(h1.engine, argparse.Namespace(force=True), out)
    assert out.getvalue() == "Deleted Networks:\nidle\n"  # the overlay network is the cluster's, not this host's
    assert h1.engine.overlays.find("app") is not None and h2.engine.overlays.find("app") is not None
