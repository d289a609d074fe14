"""Published ports through the engine (issue 14), on the in-memory kernel and port holder: which host port a
request gets, what a taken port does, and that no binding and no held port outlives its container."""

from __future__ import annotations

import pytest

from netcore.errors import Conflict, NetcoreError
from netcore.ports import HostPort, parse_publish
from netcore.ports.holder import PortError
from tests.support.engine_calls import create_network, run_container
from tests.support.fake_kernel import Killed, new_world

world = pytest.fixture(new_world)


def publish(*specs: str):
    return [parse_publish(spec) for spec in specs]


def rows(engine) -> list[tuple]:
    names = {c.id: c.name for c in engine.store.containers()}
    return [(names[p.container_id], p.protocol, p.container_port, p.host_ip, p.host_port) for p in engine.store.ports()]


@pytest.fixture
def engine(world):
    engine = world.engine()
    create_network(engine, "app", ["10.1.0.0/24"])
    return engine


def test_fixed_ranges_and_ephemeral_ports_are_recorded_held_and_taken_in_turn(world, engine):
    world.ports.busy.add(HostPort("tcp", "0.0.0.0", 9000))  # a host process on 9000
    run_container(engine, "web", "app", publish=publish("8080:80", "9000-9002:81", "90", "127.0.0.1::53/udp"))
    assert rows(engine) == [("web", "tcp", 80, "", 8080), ("web", "tcp", 81, "", 9001),
                            ("web", "tcp", 90, "", 32768), ("web", "udp", 53, "127.0.0.1", 32768)]
    assert world.ports.holding == {HostPort("tcp", "0.0.0.0", 8080), HostPort("tcp", "0.0.0.0", 9001),
                                   HostPort("tcp", "0.0.0.0", 32768), HostPort("udp", "127.0.0.1", 32768)}
    assert world.ports.forgotten == [HostPort("udp", "127.0.0.1", 32768)]  # UDP only, once its rule is live
    run_container(engine, "db", "app", publish=publish("90", "91"))  # in turn after the last one given, 32770 reserved
    assert [r[4] for r in rows(engine)[4:]] == [32769, 32771]
    engine.remove_containers(["web"])
    run_container(engine, "cache", "app", publish=publish("90"))  # 32768 is free again, but comes after 32775
    assert rows(engine)[-1] == ("cache", "tcp", 90, "", 32772)


def test_a_taken_host_port_is_one_line_and_changes_nothing(world, engine):
    run_container(engine, "web", "app", publish=publish("8080:80"))
    before = (engine.store.containers(), engine.store.ports(), set(world.ports.holding), world.kernel.list_namespaces())
    with pytest.raises(Conflict) as by_container:
        run_container(engine, "second", "app", publish=publish("127.0.0.1:8080:81"))
    assert str(by_container.value) == ("Bind for 127.0.0.1:8080 failed: port is already allocated "
                                       "(tcp, published by container web)")
    world.ports.busy.add(HostPort("udp", "0.0.0.0", 5353))
    with pytest.raises(PortError, match=r"^Bind for 0.0.0.0:5353 failed: port is already allocated \(udp, held by"):
        run_container(engine, "second", "app", publish=publish("5353:53/udp"))
    world.ports.busy.update(HostPort("tcp", "0.0.0.0", p) for p in (9000, 9001))
    with pytest.raises(Conflict, match="no free host port for 80/tcp of container second among ports 9000-9001"):
        run_container(engine, "second", "app", publish=publish("9000-9001:80"))
    after = (engine.store.containers(), engine.store.ports(), set(world.ports.holding), world.kernel.list_namespaces())
    assert after == before
    world.assert_consistent(engine)


def test_a_port_taken_between_the_check_and_the_hold_takes_the_run_back(world, engine):
    class Racing(type(world.ports)):
        def check(self, port, shared_with=()):  # free when checked, taken by the time it is bound
            pass
    racing = Racing()
    racing.busy.add(HostPort("tcp", "0.0.0.0", 8080))
    late = world.engine(ports=racing)
    with pytest.raises(NetcoreError, match=r"^container web not created: Bind for 0.0.0.0:8080 failed"):
        run_container(late, "web", "app", publish=publish("8080:80", "8081:81"))
    assert late.store.containers() == [] and late.store.ports() == [] and racing.holding == set()
    world.assert_consistent(late)


def test_publishing_needs_a_network_something_can_reach(engine):
    create_network(engine, "back", ["10.2.0.0/24"], internal=True)
    for net, reason in (("host", "uses the host's ports directly"), ("none", "no network to publish from"),
                        ("back", "not internal")):
        with pytest.raises(NetcoreError, match=reason):
            run_container(engine, "web", net, publish=publish("80"))
    assert engine.store.containers() == []


def test_a_run_killed_midway_leaves_no_binding_and_no_held_port_once_the_next_command_ran(world, engine):
    world.kernel.kill_at("attach_endpoint")
    with pytest.raises(Killed):
        run_container(engine, "web", "app", publish=publish("8080:80", "53:53/udp"))
    assert len(engine.store.ports()) == 2  # recorded with the container, before the kernel work
    world.kernel.revive()
    reader = world.engine()
    reader.assert_firewall()  # a command that only reads maps and holds nothing of a half-made container
    assert world.ports.holding == set()
    after = world.engine()
    run_container(after, "db", "app", publish=publish("8080:80"))  # the next action reconciles: the port is free again
    assert rows(after) == [("db", "tcp", 80, "", 8080)] and world.ports.holding == {HostPort("tcp", "0.0.0.0", 8080)}
    world.assert_consistent(after)


def test_a_killed_holder_is_replaced_by_the_next_command_and_removal_releases_and_forgets(world, engine):
    run_container(engine, "web", "app", publish=publish("8080:80", "53:53/udp"))
    world.ports.holding = set()  # kill -9 of the port holder: the kernel closed its sockets
    reader = world.engine()
    reader.assert_firewall()  # `netcore ps`
    assert world.ports.holding == {HostPort("tcp", "0.0.0.0", 8080), HostPort("udp", "0.0.0.0", 53)}
    world.ports.forgotten.clear()
    reader.remove_containers(["web"])
    assert world.ports.holding == set() and world.ports.forgotten == [HostPort("udp", "0.0.0.0", 53)]
    assert world.ports.stops == 1  # nothing left to hold: the holder goes, and is not asked to again


def test_a_port_a_host_process_took_while_no_holder_ran_is_a_warning_not_a_failure(world, engine):
    run_container(engine, "web", "app", publish=publish("8080:80"))
    world.ports.holding = set()
    world.ports.busy.add(HostPort("tcp", "0.0.0.0", 8080))
    later = world.engine()
    run_container(later, "db", "app")
    assert [w for w in later.warnings if "published port tcp 0.0.0.0:8080 of container web is not held" in w]
    assert [c.name for c in later.store.containers()] == ["web", "db"]


def test_purge_releases_every_port_and_stops_the_holder(world, engine):
    run_container(engine, "web", "app", publish=publish("8080:80"))
    engine.purge()
    assert world.ports.holding == set() and world.ports.stops >= 1 and engine.store.ports() == []


def test_port_53_is_checked_and_held_beside_dnsds_addresses(world, engine):
    """Issue 23 item 3: the port holder learns where dnsd listens, the sockets a port published on dnsd's
    port may share it with (netcore.ports.holder.bind)."""
    create_network(engine, "other", ["10.2.0.0/24"], ipv6=True)
    run_container(engine, "pihole", "app", publish=publish("53:53/udp", "53:53/tcp"))
    assert world.ports.holding == {HostPort("udp", "0.0.0.0", 53), HostPort("tcp", "0.0.0.0", 53)}
    other = engine.store.find_network("other")
    assert world.ports.shared_with == {"10.1.0.1", other.gateway, other.gateway6}


def test_two_specs_of_one_run_merge_or_collide_never_with_the_container_itself(world, engine):
    """Issue 23, item 8: ``run -p 8090:8090 -p '[::]:8090:8090'`` was refused as "published by container c4",
    c4 being the container the run creates."""
    run_container(engine, "c4", "app", publish=publish("8090:8090", "[::]:8090:8090"))
    assert rows(engine) == [("c4", "tcp", 8090, "", 8090)]
    assert world.ports.holding == {HostPort("tcp", "0.0.0.0", 8090)}
    # the exact port first, the range after
    run_container(engine, "c5", "app", publish=publish("9000-9001:80", "9000:81"))
    assert rows(engine)[1:] == [("c5", "tcp", 81, "", 9000), ("c5", "tcp", 80, "", 9001)]
    before = (engine.store.containers(), engine.store.ports())
    with pytest.raises(NetcoreError) as collide:
        run_container(engine, "c6", "app", publish=publish("7000:80", "7000:81"))
    assert collide.value.exit_code == 2
    assert str(collide.value) == ("-p 7000:80/tcp and -p 7000:81/tcp collide: both publish tcp host port 7000 on "
                                  "every address (to container ports 80 and 81)")
    assert (engine.store.containers(), engine.store.ports()) == before
