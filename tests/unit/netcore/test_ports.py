"""Published ports, pure (netcore.ports): Docker's -p grammar, host-port order, collisions, what maps where."""

from __future__ import annotations

import pytest

from netcore.model import STATE_CREATING, STATE_RUNNING, Container, Endpoint, Network, PortBinding
from netcore.ports import (
    HostPort,
    Mapping,
    PortRequest,
    PublishError,
    PublishSpec,
    conflict,
    ephemeral_candidates,
    mappings,
    overlaps,
    parse_port_filter,
    parse_port_range,
    parse_publish,
    parse_reserved_ports,
    plan_requests,
    port_lines,
    published_flow,
)

# -- the grammar: [HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO], as moby's nat.ParsePortSpec reads it --

ACCEPTED = {
    "80": PublishSpec("", None, (80, 80), "tcp"),
    "8080:80": PublishSpec("", (8080, 8080), (80, 80), "tcp"),
    "53:53/udp": PublishSpec("", (53, 53), (53, 53), "udp"),
    "80/TCP": PublishSpec("", None, (80, 80), "tcp"),
    "127.0.0.1:8080:80": PublishSpec("127.0.0.1", (8080, 8080), (80, 80), "tcp"),
    "127.0.0.1::80": PublishSpec("127.0.0.1", None, (80, 80), "tcp"),
    "0.0.0.0:8080:80/sctp": PublishSpec("0.0.0.0", (8080, 8080), (80, 80), "sctp"),
    "[::]:8080:80": PublishSpec("::", (8080, 8080), (80, 80), "tcp"),
    "[2001:DB8::1]::80/udp": PublishSpec("2001:db8::1", None, (80, 80), "udp"),
    "8000-8010:80": PublishSpec("", (8000, 8010), (80, 80), "tcp"),
    "8000-8001:80-81": PublishSpec("", (8000, 8001), (80, 81), "tcp"),
    "80-81": PublishSpec("", None, (80, 81), "tcp"),
    "1:65535": PublishSpec("", (1, 1), (65535, 65535), "tcp"),
}

REFUSED = {
    "80:": "no container port",
    "": "no container port",
    "70000:80": "ports are 1 to 65535",
    "8080:0": "ports are 1 to 65535",
    "8000-8002:80-81": "differ in length",
    "81-80": "the range ends before it starts",
    "1.2.3.4.5::80": "invalid host IP '1.2.3.4.5'",
    "[1.2.3.4]::80": "not an IPv6 address",
    "::1:80:80": "too many ':'",
    ":8080:80": "an empty host IP",
    "80/icmp": "invalid protocol 'icmp'",
    "http:80": "invalid host port 'http'",
    "[::1]:8080:80": "the kernel does not route IPv6 loopback",
    "[::]8080:80": "expected [IPv6]:HOST_PORT:CONTAINER_PORT",
}


@pytest.mark.parametrize("spec", ACCEPTED)
def test_dockers_grammar_is_read_as_docker_reads_it(spec):
    assert parse_publish(spec) == ACCEPTED[spec]


@pytest.mark.parametrize("spec", REFUSED)
def test_malformed_specs_are_one_line_naming_the_fault(spec):
    with pytest.raises(PublishError) as raised:
        parse_publish(spec)
    message = str(raised.value)
    assert REFUSED[spec] in message and "\n" not in message and repr(spec) in message


def test_each_container_port_gets_its_own_request_with_the_host_ports_it_may_take():
    spec = "8000-8001:80-81/tcp"
    assert parse_publish("8000-8001:80-81").requests() == [PortRequest("tcp", 80, "", (8000, 8000), "8000-8001", spec),
                                                           PortRequest("tcp", 81, "", (8001, 8001), "8000-8001", spec)]
    assert parse_publish("8000-8010:80").requests() == [PortRequest("tcp", 80, "", (8000, 8010), "8000-8010",
                                                                    "8000-8010:80/tcp")]
    spec = "127.0.0.1::80-81/udp"
    assert parse_publish(spec).requests() == [PortRequest("udp", 80, "127.0.0.1", None, "", spec),
                                              PortRequest("udp", 81, "127.0.0.1", None, "", spec)]


# -- host ports ----------------------------------------------------------------------------------------------


def test_the_kernels_port_settings_are_read_as_it_prints_them():
    assert parse_port_range("32768\t60999\n") == (32768, 60999)
    assert parse_reserved_ports("8080,9000-9002\n") == {8080, 9000, 9001, 9002}
    assert parse_reserved_ports("\n") == frozenset()
    with pytest.raises(ValueError):
        parse_port_range("60999 32768")


def test_ephemeral_ports_go_in_turn_after_the_last_one_given_skipping_reserved_ones():
    assert list(ephemeral_candidates((100, 105), {101}, None)) == [100, 102, 103, 104, 105]
    assert list(ephemeral_candidates((100, 105), {101}, 102)) == [103, 104, 105, 100, 102]  # wraps around once
    assert list(ephemeral_candidates((100, 105), (), 105)) == [100, 101, 102, 103, 104, 105]
    assert list(ephemeral_candidates((100, 105), (), 7)) == [100, 101, 102, 103, 104, 105]  # outside: from the start


def test_every_address_collides_with_each_one_and_wildcards_with_their_family():
    assert overlaps("", "127.0.0.1") and overlaps("::", "")
    assert overlaps("0.0.0.0", "10.0.0.1") and not overlaps("0.0.0.0", "::")
    assert overlaps("::", "2001:db8::1") and not overlaps("::", "10.0.0.1")
    assert overlaps("10.0.0.1", "10.0.0.1") and not overlaps("10.0.0.1", "10.0.0.2")
    web = PortBinding("w" * 64, "tcp", 80, "127.0.0.1", 8080)
    assert conflict("tcp", "", 8080, [web]) == web
    assert conflict("udp", "", 8080, [web]) is None  # another protocol
    assert conflict("tcp", "10.0.0.1", 8080, [web]) is None  # another address
    assert conflict("tcp", "127.0.0.1", 8081, [web]) is None


# -- what each binding maps to -----------------------------------------------------------------------------------

APP = Network(id="a" * 64, name="app", bridge="br-app", subnet="10.1.0.0/24", gateway="10.1.0.1",
              subnet6="fd00:1::/64", gateway6="fd00:1::1")
BACK = Network(id="b" * 64, name="back", bridge="br-back", subnet="10.2.0.0/24", gateway="10.2.0.1", internal=True)
WEB = Container(id="c" * 64, name="web", hostname="web", netns="ns-web")


def endpoint(network: Network, ifname: str, ipv4: str, ipv6: str | None = None, state: str = STATE_RUNNING):
    return Endpoint(id=ifname * 16, container_id=WEB.id, network_id=network.id, ifname=ifname,
                    host_ifname=f"v{ifname}", mac="02:42:00:00:00:01", ipv4=ipv4, ipv6=ipv6, state=state)


def test_a_binding_maps_to_the_first_non_internal_interface_in_each_family_it_asks_for():
    endpoints = [endpoint(BACK, "eth0", "10.2.0.2"), endpoint(APP, "eth1", "10.1.0.2", "fd00:1::2")]
    every, loopback, v6 = (PortBinding(WEB.id, "tcp", 80, "", 8080), PortBinding(WEB.id, "udp", 53, "127.0.0.1", 53),
                           PortBinding(WEB.id, "tcp", 443, "::", 8443))
    found = mappings([every, loopback, v6], [APP, BACK], [WEB], endpoints)
    assert [(m.family, m.host_ip, m.host_port, m.address, m.container_port, m.bridge) for m in found] == [
        (4, "", 8080, "10.1.0.2", 80, "br-app"), (6, "", 8080, "fd00:1::2", 80, "br-app"),
        (4, "127.0.0.1", 53, "10.1.0.2", 53, "br-app"), (6, "::", 8443, "fd00:1::2", 443, "br-app")]
    assert [m.held for m in found] == [HostPort("tcp", "0.0.0.0", 8080), HostPort("tcp", "::", 8080),
                                       HostPort("udp", "127.0.0.1", 53), HostPort("tcp", "::", 8443)]
    assert [m.reaches_loopback for m in found] == [True, False, True, False]
    # eth10 sorts after eth9, not after eth1
    many = [endpoint(APP, "eth10", "10.1.0.10"), endpoint(APP, "eth9", "10.1.0.9")]
    assert [m.address for m in mappings([every], [APP], [WEB], many)] == ["10.1.0.9"]


def test_nothing_maps_without_a_running_container_and_a_running_non_internal_interface():
    every = PortBinding(WEB.id, "tcp", 80, "", 8080)
    assert mappings([every], [BACK], [WEB], [endpoint(BACK, "eth0", "10.2.0.2")]) == []
    lan = Network(id="d" * 64, name="lan", bridge="mv-lan", subnet="192.168.7.0/24", gateway="192.168.7.1",
                  driver="macvlan", routed=False)  # reached on the LAN itself, not through the host
    assert [m.address for m in mappings([every], [lan, APP], [WEB], [endpoint(lan, "eth0", "192.168.7.5"),
                                                                     endpoint(APP, "eth1", "10.1.0.2")])] == [
        "10.1.0.2"]
    assert mappings([every], [APP], [WEB], [endpoint(APP, "eth0", "10.1.0.2", state=STATE_CREATING)]) == []
    creating = Container(id=WEB.id, name="web", hostname="web", netns="ns-web", state=STATE_CREATING)
    assert mappings([every], [APP], [creating], [endpoint(APP, "eth0", "10.1.0.2")]) == []


def test_host_ports_print_and_parse_back():
    for port in (HostPort("tcp", "0.0.0.0", 8080), HostPort("udp", "::", 53), HostPort("sctp", "2001:db8::1", 9)):
        assert HostPort.parse(str(port)) == port
    assert str(HostPort("udp", "::", 53)) == "udp [::]:53"


def test_port_lines_are_dockers_sorted_by_container_port():
    bindings = [PortBinding(WEB.id, "udp", 53, "127.0.0.1", 5353), PortBinding(WEB.id, "tcp", 80, "", 8080),
                PortBinding(WEB.id, "tcp", 443, "2001:db8::1", 8443)]
    assert port_lines(bindings, ipv6=True) == ["53/udp -> 127.0.0.1:5353", "80/tcp -> 0.0.0.0:8080",
                                               "80/tcp -> [::]:8080", "443/tcp -> [2001:db8::1]:8443"]
    assert port_lines(bindings[1:2], ipv6=False) == ["80/tcp -> 0.0.0.0:8080"]
    assert parse_port_filter("53/UDP") == (53, "udp") and parse_port_filter("80") == (80, "tcp")
    for bad in ("http", "0", "80/icmp"):
        with pytest.raises(PublishError):
            parse_port_filter(bad)


def test_a_mapping_knows_whether_the_host_reaches_it_through_loopback():
    def mapping(family: int, host_ip: str) -> Mapping:
        return Mapping("tcp", family, host_ip, 8080, "10.1.0.2", 80, APP.id, "br-app", WEB.id, "web")
    assert mapping(4, "").reaches_loopback and mapping(4, "127.0.0.2").reaches_loopback
    assert not mapping(4, "192.0.2.1").reaches_loopback and not mapping(6, "").reaches_loopback
    assert mapping(4, "127.0.0.2").loopback and not mapping(4, "").loopback


# -- issue 23, item 8: the specs of one run, merged among themselves or refused in one line ---------------------


def _planned(*specs: str) -> list[tuple]:
    return [(r.protocol, r.container_port, r.host_ip, r.host_ports) for r in plan_requests(map(parse_publish, specs))]


def test_specs_of_one_run_that_agree_are_merged_into_the_wider_address():
    assert _planned("8090:8090", "[::]:8090:8090") == [("tcp", 8090, "", (8090, 8090))]
    assert _planned("[::]:8090:8090", "8090:8090") == [("tcp", 8090, "", (8090, 8090))]
    assert _planned("127.0.0.1:8080:80", "0.0.0.0:8080:80") == [("tcp", 80, "0.0.0.0", (8080, 8080))]
    assert _planned("8080:80", "8080:80") == [("tcp", 80, "", (8080, 8080))]
    assert _planned("8000-8001:80-81", "8001:81") == [("tcp", 80, "", (8000, 8000)), ("tcp", 81, "", (8001, 8001))]
    # no overlap: both stay (one port on each family; on two addresses; on two protocols)
    assert _planned("0.0.0.0:53:53/udp", "[::]:53:53/udp") == [("udp", 53, "0.0.0.0", (53, 53)),
                                                                ("udp", 53, "::", (53, 53))]
    assert _planned("127.0.0.1:80:80", "127.0.0.2:80:80") == [("tcp", 80, "127.0.0.1", (80, 80)),
                                                              ("tcp", 80, "127.0.0.2", (80, 80))]
    assert _planned("53:53/udp", "53:53") == [("udp", 53, "", (53, 53)), ("tcp", 53, "", (53, 53))]


def test_exact_ports_go_before_ranges_and_ephemeral_ones_as_in_docker():
    assert _planned("8000-8001:80", "90", "8000:81") == [("tcp", 81, "", (8000, 8000)),
                                                         ("tcp", 80, "", (8000, 8001)), ("tcp", 90, "", None)]


def test_two_specs_of_one_run_that_collide_are_one_line_naming_both():
    with pytest.raises(PublishError) as collide:
        plan_requests(map(parse_publish, ("8080:80", "127.0.0.1:8080:81")))
    assert str(collide.value) == ("-p 8080:80/tcp and -p 127.0.0.1:8080:81/tcp collide: both publish tcp host port "
                                  "8080 on 127.0.0.1 (to container ports 80 and 81)")
    with pytest.raises(PublishError, match=r"^-p \[::\]:53:53/udp and -p 53:5353/udp collide: both publish udp "
                                           r"host port 53 on \[::\] \(to container ports 53 and 5353\)$"):
        plan_requests(map(parse_publish, ("[::]:53:53/udp", "53:5353/udp")))


def test_a_spec_prints_as_it_is_written():
    for text in ("8090:8090/tcp", "[::]:8090:8090/tcp", "127.0.0.1::53/udp", "80/tcp", "8000-8001:80-81/sctp",
                 "8000-8010:80/tcp"):
        assert str(parse_publish(text)) == text


def test_a_published_ports_flows_are_those_to_its_address_or_the_gateway_namespaces_own():
    """Issue 24, item 6: conntrack entries are deleted for exactly the published port's flows."""
    local = {"192.0.2.1", "10.81.0.1", "127.0.0.1", "fd00::1"}
    every = HostPort("udp", "0.0.0.0", 7000)
    assert published_flow(every, "udp", "192.0.2.1", 7000, local)  # the host's LAN address
    assert published_flow(every, "udp", "127.0.0.1", 7000, local)  # the host itself through loopback
    assert published_flow(every, "udp", "127.0.0.9", 7000, local)
    assert not published_flow(every, "udp", "198.51.100.7", 7000, local)  # forwarded to another machine's 7000
    assert not published_flow(every, "tcp", "192.0.2.1", 7000, local)
    assert not published_flow(every, "udp", "192.0.2.1", 7001, local)
    assert not published_flow(every, "udp", "fd00::1", 7000, local)  # 0.0.0.0 is IPv4 only
    assert published_flow(HostPort("udp", "::", 7000), "udp", "fd00::1", 7000, local)
    one = HostPort("udp", "192.0.2.1", 7000)
    assert published_flow(one, "udp", "192.0.2.1", 7000, local)
    assert published_flow(one, "udp", "::ffff:192.0.2.1", 7000, local)
    assert not published_flow(one, "udp", "10.81.0.1", 7000, local)
