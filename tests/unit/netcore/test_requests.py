"""One request per user action (netcore.requests): checked by one pure method, normalised, JSON-safe."""

from __future__ import annotations

import json

import pytest

from netcore.compose.document import Document, parse
from netcore.compose.merge import merge
from netcore.compose.model import normalize
from netcore.compose.plan import network_spec
from netcore.errors import NetcoreError
from netcore.ports import parse_publish
from netcore.requests import Attachment, ConnectSpec, ContainerSpec, NetworkSpec, parse_extra_host


def test_a_network_request_is_normalised():
    spec = NetworkSpec("app", subnets=("10.1.0.0/24", "fd00:1:0:0::/64"), ipv6=True, gateways=("10.1.0.254",),
                       dns=("192.0.2.53:53", "[2001:db8::1]:5353"), options={"com.docker.network.driver.mtu": 1400})
    checked = spec.check()
    assert checked.subnets == ("10.1.0.0/24", "fd00:1::/64")
    assert (checked.subnet4, checked.subnet6, checked.gateway4, checked.gateway6) == (
        "10.1.0.0/24", "fd00:1::/64", "10.1.0.254", None)
    assert checked.dns == ("192.0.2.53", "[2001:db8::1]:5353")
    assert checked.options == {"com.docker.network.driver.mtu": "1400"}
    assert checked.check() == checked  # checking twice changes nothing


@pytest.mark.parametrize(("spec", "message"), [
    (NetworkSpec("bad name"), "invalid network name 'bad name'"),
    (NetworkSpec("host"), "reserved for the host network mode"),
    (NetworkSpec("a", subnets=("10.1.0.0/24", "10.2.0.0/24")), "at most one IPv4 and one IPv6 --subnet"),
    (NetworkSpec("a", subnets=("fd00::/64",)), "add --ipv6"),
    (NetworkSpec("a", subnets=("10.1.0.1/24",)), "invalid subnet '10.1.0.1/24'"),
    (NetworkSpec("a", ip_range="10.1.0.0/25"), "need the --subnet they belong to"),
    (NetworkSpec("a", gateways=("10.1.0.1",)), "need the --subnet they belong to"),
    (NetworkSpec("a", subnets=("10.1.0.0/24",), gateways=("fd00::1",)), "IPv6 --gateway needs the IPv6 --subnet"),
    (NetworkSpec("a", subnets=("10.1.0.0/24",), ip_range="fd00::/64"), "IPv4 subnet only"),
    (NetworkSpec("a", dns=("nameserver",)), "invalid DNS server 'nameserver'"),
])
def test_a_bad_network_request_is_one_line(spec, message):
    with pytest.raises(NetcoreError, match=message) as raised:
        spec.check()
    assert "\n" not in str(raised.value)


def test_docker_run_flags_become_one_container_request():
    spec = ContainerSpec.from_flags("web", "app", ["www", "www"], "10.1.0.9", "webhost", ["192.0.2.1"],
                                    [parse_publish("8080:80")]).check()
    assert spec.attachments == (Attachment("app", ("www",), "10.1.0.9"),)
    assert (spec.mode, spec.hostname, spec.dns) == ("bridge", "webhost", ("192.0.2.1",))
    assert ContainerSpec.from_flags("plain").check().attachments == (Attachment("bridge"),)
    other = ContainerSpec.from_flags("side", "container:web").check()
    assert (other.mode, other.peer, other.attachments) == ("container", "web", ())


@pytest.mark.parametrize(("make", "message"), [
    (lambda: ContainerSpec.from_flags("a", "host", ["x"]), "--net-alias and --ip need a bridge network, not --net"),
    (lambda: ContainerSpec.from_flags("a", "none", publish=[parse_publish("80")]).check(), "-p needs a bridge network"),
    (lambda: ContainerSpec.from_flags("a", "container:").check(), "needs the name or ID of a container"),
    (lambda: ContainerSpec(networks=(Attachment("a"), Attachment("a"))).check(), "network a is given twice"),
    (lambda: ContainerSpec(net="app").check(), "is a network: give it in networks"),
    (lambda: ContainerSpec.from_flags("a", "app", ip="fd00::9").check(), "an IPv4 address"),
    (lambda: ContainerSpec.from_flags("a b").check(), "invalid container name"),
    (lambda: ContainerSpec.from_flags("a", "app", ["no way"]).check(), "invalid alias name"),
])
def test_a_bad_container_request_is_one_line(make, message):
    with pytest.raises(NetcoreError, match=message):
        make()


def test_every_request_goes_through_json_whole():
    for spec in (NetworkSpec("app", "macvlan", ("10.1.0.0/24",), "10.1.0.128/25", ("10.1.0.1",), True, False,
                             ("192.0.2.1",), {"parent": "eth0"}, {"team": "a"}),
                 ContainerSpec("web", (Attachment("app", ("www",), "10.1.0.9"), Attachment("db")), None, "h",
                               ("192.0.2.1",), (parse_publish("127.0.0.1:8080-8081:80-81/udp"), parse_publish("90")),
                               {"com.docker.compose.project": "p"}),
                 ConnectSpec("web", Attachment("db", ("x",), None, "fd00::9"))):
        assert type(spec).from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_an_unknown_field_is_refused():
    with pytest.raises(NetcoreError, match="unknown field 'bogus' in a NetworkSpec"):
        NetworkSpec.from_dict({"name": "a", "bogus": 1})


def test_a_compose_file_declares_every_driver_the_cli_can():
    text = ("networks:\n  lan:\n    driver: macvlan\n    driver_opts: {parent: eth0}\n    ipam:\n      config:\n"
            "        - {subnet: 192.168.77.0/24, gateway: 192.168.77.1}\nservices:\n  a: {networks: [lan]}\n")
    project = normalize(merge(Document({}), parse(text, "compose.yaml")[0]), "p")
    spec = network_spec(project, project.network("lan")).request().check()
    assert (spec.driver, spec.subnets, spec.gateways, spec.options) == (
        "macvlan", ("192.168.77.0/24",), ("192.168.77.1",), {"parent": "eth0"})


def test_several_networks_attach_in_order_with_the_legacy_flags_on_the_first():
    spec = ContainerSpec.from_flags("a", ["front", "back"], ["www"], "10.1.0.9").check()
    assert spec.networks == (Attachment("front", ("www",), "10.1.0.9"), Attachment("back"))
    with pytest.raises(NetcoreError, match="--net host cannot be combined with other networks"):
        ContainerSpec.from_flags("a", ["host", "back"])


def test_search_domains_extra_hosts_and_a_command():
    spec = ContainerSpec.from_flags("a", dns_search=["corp.example.", "corp.example", "."],
                                    extra_hosts=["h:10.0.0.1", "v6=[fd00::1]", "gw:host-gateway"],
                                    command=["server", "-v"]).check()
    assert spec.dns_search == ("corp.example", ".")
    assert spec.extra_hosts == ("h:10.0.0.1", "v6:fd00::1", "gw:host-gateway") and spec.command == ("server", "-v")
    assert ContainerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for bad, message in (("nohost", "expected HOST:IP"), ("h:300.1.1.1", "not an IP address"), (":1.2.3.4", "HOST")):
        with pytest.raises(NetcoreError, match=message):
            parse_extra_host(bad)
    with pytest.raises(NetcoreError, match="invalid --dns-search"):
        ContainerSpec.from_flags("a", dns_search=["bad domain"]).check()
    with pytest.raises(NetcoreError, match="the first of them not empty"):
        ContainerSpec.from_flags("a", command=["", "x"]).check()
