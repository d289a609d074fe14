"""The firewall seam: after each action the engine hands the firewall the state the store calls for."""

from __future__ import annotations

import pytest

from netcore.errors import NetcoreError
from netcore.firewall import FirewallState, NetworkRules, desired_state
from netcore.model import STATE_CREATING, STATE_REMOVING, Container, Endpoint, Network, PortBinding
from netcore.ports import Mapping, parse_publish
from tests.support.engine_calls import connect_container, create_network, run_container
from tests.support.fake_kernel import new_world


class RecordingFirewall:
    """Keeps every state it is handed; ``error`` makes the next apply fail."""

    def __init__(self):
        self.applied: list[FirewallState] = []
        self.error: Exception | None = None

    def check_ready(self) -> None:
        pass

    def changed_outside(self) -> bool:
        return False

    def apply(self, desired: FirewallState, force: bool = False) -> tuple[str, ...]:
        if self.error:
            error, self.error = self.error, None
            raise error
        self.applied.append(desired)
        return ()


world = pytest.fixture(new_world)


@pytest.fixture
def recorded(world):
    fw = RecordingFirewall()
    return world, fw, world.engine(firewall=fw)


def ports_of(state: FirewallState) -> list[tuple]:
    networks = {n.id: n.name for n in state.networks}
    return sorted((m.container, networks[m.network_id], m.host_ip or "*", m.host_port, m.address, m.container_port)
                  for m in state.ports)


def test_each_action_hands_the_firewall_the_state_of_the_store(recorded):
    _world, fw, engine = recorded
    app = create_network(engine, "app", ["10.1.0.0/24", "fd00:1::/64"], internal=True, ipv6=True,
                                options={"com.docker.network.bridge.enable_icc": "false"})
    [bridge, rules] = fw.applied[-1].networks
    assert bridge.name == "bridge" and bridge.masquerade and bridge.icc and not bridge.internal
    assert rules == NetworkRules(id=app.id, name="app", bridge=app.bridge, subnet="10.1.0.0/24", gateway="10.1.0.1",
                                 subnet6="fd00:1::/64", gateway6="fd00:1::1", internal=True, icc=False,
                                 masquerade=False, dns=True)
    assert fw.applied[-1].ports == ()
    create_network(engine, "pub", ["10.2.0.0/24", "fd00:2::/64"], ipv6=True)
    run_container(engine, "web", "pub", publish=[parse_publish("8080:80")])
    assert ports_of(fw.applied[-1]) == [("web", "pub", "*", 8080, "10.2.0.2", 80),
                                        ("web", "pub", "*", 8080, "fd00:2::2", 80)]
    connect_container(engine, "app", "web")  # eth1, internal: the published port still leads to eth0
    assert ports_of(fw.applied[-1]) == [("web", "pub", "*", 8080, "10.2.0.2", 80),
                                        ("web", "pub", "*", 8080, "fd00:2::2", 80)]
    connect_container(engine, "bridge", "web")  # eth2
    engine.disconnect("pub", "web")  # eth0 gone: the next non-internal interface takes the port
    assert ports_of(fw.applied[-1]) == [("web", "bridge", "*", 8080, "172.17.0.2", 80)]
    engine.remove_containers(["web"])
    assert fw.applied[-1].ports == ()
    engine.remove_network("app")
    assert [n.name for n in fw.applied[-1].networks] == ["bridge", "pub"]
    assert len(fw.applied) == 8  # once per action: create, run and connect before they return, the rest at its end


def test_a_refused_ruleset_takes_back_the_run_connect_or_create_that_needed_it(recorded):
    """Issue 13: a rejected ruleset is one line with nft's message, and the store and kernel as they were."""
    world, fw, engine = recorded
    create_network(engine, "app", ["10.1.0.0/24"])
    before = (engine.store.containers(), engine.store.endpoints(), engine.store.networks())
    for action, expected in ((lambda: run_container(engine, "web", "app"), "container web not created: "),
                             (lambda: create_network(engine, "db", ["10.2.0.0/24"]), "network db not created: ")):
        fw.error = OSError("nft: netlink: Error: Could not process rule:\nNo such file or directory")
        with pytest.raises(NetcoreError) as raised:
            action()
        message = str(raised.value)
        assert message.startswith(expected + "nft: netlink: Error: Could not process rule: No such file"), message
        assert "\n" not in message
        assert (engine.store.containers(), engine.store.endpoints(), engine.store.networks()) == before
        world.assert_consistent(engine)
    run_container(engine, "web", "app")
    fw.error = OSError("refused")
    with pytest.raises(NetcoreError, match=r"not connected|refused"):
        connect_container(engine, "bridge", "web")
    assert [e.network_id for e in engine.store.endpoints()] == [engine.store.network("app").id]
    world.assert_consistent(engine)


def test_a_failing_apply_after_a_removal_is_one_line_and_the_removal_stays_done(recorded):
    world, fw, engine = recorded
    create_network(engine, "app", ["10.1.0.0/24"])
    run_container(engine, "web", "app")
    run_container(engine, "db", "app")
    fw.error = OSError("nft: netlink: Error: Could not process rule:\nNo such file or directory")
    with pytest.raises(NetcoreError) as raised:
        engine.remove_containers(["web"])
    message = str(raised.value)
    assert message.startswith("firewall not applied: nft: netlink: Error: Could not process rule: No such file")
    assert "\n" not in message and "next command applies the firewall again" in message
    world.assert_consistent(engine)
    assert [c.name for c in engine.store.containers()] == ["db"]
    # the next action applies it whole
    run_container(engine, "cache", "app", publish=[parse_publish("127.0.0.1:53:53/udp")])
    assert ports_of(fw.applied[-1]) == [("cache", "app", "127.0.0.1", 53, "10.1.0.2", 53)]
    assert [n.name for n in fw.applied[-1].networks] == ["bridge", "app"]


def test_purge_hands_the_firewall_what_is_left_and_keeps_going_past_its_failure(recorded):
    world, fw, engine = recorded
    create_network(engine, "app", ["10.1.0.0/24"])
    run_container(engine, "web", "app")
    engine.purge()
    assert fw.applied[-1] == FirewallState()
    fw.error = RuntimeError("nft is gone")
    with pytest.raises(NetcoreError, match="not removed: firewall: firewall not applied: nft is gone"):
        world.engine(firewall=fw).purge()


def test_the_desired_state_counts_running_records_only():
    net = Network(id="n" * 64, name="app", bridge="br-app", subnet="10.1.0.0/24", gateway="10.1.0.1")
    half = Network(id="h" * 64, name="half", bridge="br-half", subnet="10.2.0.0/24", gateway="10.2.0.1",
                   state=STATE_CREATING)
    web = Container(id="w" * 64, name="web", hostname="web", netns="ns-web")
    going = Container(id="g" * 64, name="going", hostname="going", netns="ns-going", state=STATE_REMOVING)
    endpoints = [Endpoint(id="1" * 64, container_id=web.id, network_id=half.id, ifname="eth0", host_ifname="veth3",
                          mac="02:42:0a:02:00:02", ipv4="10.2.0.2"),
                 Endpoint(id="2" * 64, container_id=going.id, network_id=net.id, ifname="eth0", host_ifname="veth2",
                          mac="02:42:0a:01:00:03", ipv4="10.1.0.3"),
                 Endpoint(id="3" * 64, container_id=web.id, network_id=net.id, ifname="eth1", host_ifname="veth1",
                          mac="02:42:0a:01:00:02", ipv4="10.1.0.2")]
    ports = [PortBinding(web.id, "tcp", 80, "", 8080), PortBinding(going.id, "tcp", 80, "", 8081)]
    assert desired_state([net, half], [web, going], endpoints, ports) == FirewallState(
        networks=(NetworkRules(id=net.id, name="app", bridge="br-app", subnet="10.1.0.0/24", gateway="10.1.0.1"),),
        ports=(Mapping("tcp", 4, "", 8080, "10.1.0.2", 80, net.id, "br-app", web.id, "web"),))


def test_a_firewall_that_cannot_work_stops_the_action_before_anything_changes(world):
    """Issue 13: `nft` missing is one line naming the package, and nothing changed."""
    from netcore.firewall.apply import INSTALL_HINT, NftError

    class Missing(RecordingFirewall):
        def check_ready(self) -> None:
            raise NftError(INSTALL_HINT)

    engine = world.engine(firewall=Missing())
    with pytest.raises(NetcoreError, match="apt-get install nftables") as raised:
        create_network(engine, "app", ["10.1.0.0/24"])
    assert "\n" not in str(raised.value)
    assert engine.store.networks() == [] and engine.store.generation() == 0


class QuietMonitor:
    """NftMonitor's stand-in: nobody else touches nftables."""

    def __init__(self, namespace):
        pass

    def changed(self) -> bool:
        return False

    def drain(self) -> None:
        pass


def test_nftables_firewall_renders_and_commits_a_state_once_however_often_it_is_handed_it(monkeypatch):
    """A run without -p leaves the firewall's state as it was: handed it again, the firewall neither renders
    it anew nor commits it (once a container of an up of 100); a changed state is rendered and committed."""
    from netcore.firewall import apply as nft

    renders, commits = [], []
    real_render = nft.render
    monkeypatch.setattr(nft, "NftMonitor", QuietMonitor)
    monkeypatch.setattr(nft, "render", lambda state: renders.append(state) or real_render(state))
    monkeypatch.setattr(nft, "ensure", lambda ruleset, namespace: commits.append(ruleset.script))
    monkeypatch.setattr(nft, "apply", lambda ruleset, namespace: commits.append(ruleset.script))
    monkeypatch.setattr(nft, "enable_forwarding", lambda namespace, ipv6=False: False)
    monkeypatch.setattr(nft, "set_route_localnet", lambda namespace, wanted: None)
    firewall = nft.NftablesFirewall(None)
    app = NetworkRules(id="a" * 64, name="app", bridge="br-app", subnet="10.1.0.0/24", gateway="10.1.0.1")
    for _ in range(3):
        firewall.apply(FirewallState(networks=(app,)))  # equal states, new objects each time
    assert len(renders) == 1 and len(commits) == 1
    db = NetworkRules(id="b" * 64, name="db", bridge="br-db", subnet="10.2.0.0/24", gateway="10.2.0.1")
    firewall.apply(FirewallState(networks=(app, db)))
    assert len(renders) == 2 and len(commits) == 2 and "br-db" in commits[-1]
    firewall.apply(FirewallState(networks=(app, db)), force=True)  # firewall-reload: committed whatever it holds
    assert len(renders) == 2 and len(commits) == 3
