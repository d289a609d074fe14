"""Adding a network driver is one module and one registration: a test driver, used through the engine.

The driver below is what a new module under netcore/drivers/ would hold; the
fixture's ``drivers.register`` is the one line netcore/drivers/__init__.py
would get. It builds on the kernel calls the fake has (a bridge it names
``tst-``, with MTU 1400 and every port isolated) and journals what the engine
asked of it.
"""

from __future__ import annotations

import re

import pytest

from netcore import network as drivers
from netcore.errors import NetcoreError
from netcore.ipam import prefixlen
from netcore.model import Endpoint, Network
from netcore.requests import NetworkSpec
from tests.support.engine_calls import connect_container, create_network, run_container
from tests.support.fake_kernel import new_world


class LabDriver:
    """``-d test``: takes the option ``test.tag`` only, and no IPv6."""

    name = "test"
    routed = True

    def __init__(self):
        self.asked: list[tuple[str, str]] = []

    def validate(self, request: NetworkSpec) -> dict[str, str]:
        options = dict(request.options or {})
        if set(options) - {"test.tag"}:
            raise NetcoreError(f"the test driver takes only test.tag, not {sorted(set(options) - {'test.tag'})}")
        if request.ipv6:
            raise NetcoreError("the test driver has no IPv6")
        return options

    def device_name(self, network_id: str, options: dict[str, str]) -> str:
        return f"tst-{network_id[:8]}"

    def shared_routes(self, options: dict[str, str], links: dict[str, dict]) -> set:
        return set()

    def plan_network(self, network: Network, others: list[Network], links: dict[str, dict]) -> Network:
        self.asked.append(("plan_network", network.name))
        return network

    def build_network(self, kernel, network: Network) -> None:
        self.asked.append(("build_network", network.name))
        kernel.create_bridge(network.bridge, "02:00:00:00:00:01", 1400, network.gateway, prefixlen(network.subnet))

    def teardown_network(self, kernel, network: Network) -> None:
        self.asked.append(("teardown_network", network.name))
        kernel.delete_link(network.bridge)

    def build_endpoint(self, kernel, network: Network, netns: str, endpoint: Endpoint) -> None:
        self.asked.append(("build_endpoint", endpoint.ifname))
        kernel.attach_endpoint(netns, endpoint.host_ifname, endpoint.ifname, network.bridge, 1400, endpoint.mac,
                               isolated=True)

    def teardown_endpoint(self, kernel, network: Network, netns: str, endpoint: Endpoint,
                          namespace_follows: bool = False) -> None:
        self.asked.append(("teardown_endpoint", endpoint.ifname))
        kernel.delete_link(endpoint.host_ifname)

    def network_links(self, network: Network) -> list[str]:
        return [network.bridge]

    def endpoint_links(self, endpoint: Endpoint) -> list[str]:
        return [endpoint.host_ifname]

    def ports(self, network: Network, links: dict[str, dict]) -> list[str]:
        return [name for name, link in links.items() if link["master"] == network.bridge]


world = pytest.fixture(new_world)


@pytest.fixture
def test_driver():
    driver = LabDriver()
    drivers.register(driver)
    yield driver
    drivers.unregister(driver.name)


def test_a_registered_driver_builds_networks_and_endpoints_through_the_engine(world, test_driver):
    engine = world.engine()
    network = create_network(engine, "lab", ["10.5.0.0/24"], driver="test", options={"test.tag": "x"})
    assert network.bridge.startswith("tst-") and engine.store.network("lab").driver == "test"
    assert world.kernel.gateway.links[network.bridge].mtu == 1400
    web = run_container(engine, "web", "lab")
    [endpoint] = engine.store.endpoints()
    assert world.kernel.gateway.links[endpoint.host_ifname].isolated
    assert world.kernel.namespaces[web.netns].links["eth0"].addresses == ["10.5.0.2/24"]  # the engine's part
    connect_container(engine, "bridge", "web")  # a container on networks of two drivers
    engine.disconnect("lab", "web")
    connect_container(engine, "lab", "web")
    world.assert_consistent(engine)
    engine.remove_containers(["web"])
    engine.remove_network("lab")
    assert test_driver.asked == [("plan_network", "lab"), ("build_network", "lab"), ("build_endpoint", "eth0"),
                                 ("teardown_endpoint", "eth0"),
                                 ("build_endpoint", "eth0"), ("teardown_endpoint", "eth0"),
                                 ("teardown_network", "lab")]
    world.assert_consistent(engine)


def test_reconciliation_asks_the_networks_own_driver(world, test_driver):
    engine = world.engine()
    create_network(engine, "lab", ["10.5.0.0/24"], driver="test")
    run_container(engine, "web", "lab")
    world.kernel.reboot()
    world.clock.boot = "boot-2"
    test_driver.asked.clear()
    after = world.engine()
    run_container(after, "db", "lab")
    assert test_driver.asked[:2] == [("build_network", "lab"), ("build_endpoint", "eth0")]
    world.assert_consistent(after)


def test_the_driver_validates_the_request_and_an_unknown_driver_names_the_available_ones(world, test_driver):
    engine = world.engine()
    with pytest.raises(NetcoreError, match="the test driver has no IPv6"):
        create_network(engine, "lab", driver="test", ipv6=True)
    with pytest.raises(NetcoreError, match=re.escape("takes only test.tag")):
        create_network(engine, "lab", driver="test", options={"com.docker.network.driver.mtu": "1400"})
    with pytest.raises(NetcoreError) as raised:
        create_network(engine, "lab", driver="vxlan")
    assert str(raised.value) == ("unsupported driver 'vxlan': available are 'bridge', 'ipvlan', 'macvlan', 'overlay', "
                                 "'test'")
    assert engine.store.find_network("lab") is None


def test_without_registrations_netcore_has_its_own_four_drivers():
    assert drivers.available() == ["bridge", "ipvlan", "macvlan", "overlay"]
    with pytest.raises(NetcoreError,
                       match=r"^unsupported driver 'x': available are 'bridge', 'ipvlan', 'macvlan', 'overlay'$"):
        drivers.get("x")
    with pytest.raises(ValueError, match="registered already"):
        drivers.register(drivers.get("bridge"))
