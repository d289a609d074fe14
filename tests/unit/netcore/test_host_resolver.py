"""netcore host-dns: the resolvectl commands it would run, checked against a fake runner (never the host's)."""

from __future__ import annotations

import subprocess

import pytest

from netcore.errors import NetcoreError
from netcore.services.host_resolver import HostResolver, by_hand, plan


class Host:
    """A fake host: the links that exist (bridge -> ifindex) and the commands run."""

    def __init__(self, links: dict[str, int], has_resolvectl: bool = True, fail: bool = False):
        self.links = links
        self.has_resolvectl = has_resolvectl
        self.fail = fail
        self.commands: list[list[str]] = []

    def run(self, command: list[str]) -> None:
        self.commands.append(command)
        if self.fail:
            raise subprocess.CalledProcessError(1, command)

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if self.has_resolvectl and name == "resolvectl" else None

    def resolver(self, state_dir, namespace=None) -> HostResolver:
        return HostResolver(str(state_dir), namespace, self.run, self.which, self.links.get)


@pytest.fixture
def nets(world):
    app = world.network("app", "10.73.0.0/24", "10.73.0.1", subnet6="fd00:73::/64", gateway6="fd00:73::1")
    db = world.network("db", "10.74.0.0/24", "10.74.0.1")
    return [app, db]


def test_on_sets_per_link_dns_and_a_routing_only_domain_on_each_bridge(tmp_path, nets):
    host = Host({"br-app": 7, "br-db": 8})
    line = host.resolver(tmp_path).turn_on(nets)
    assert host.commands == [
        ["resolvectl", "dns", "br-app", "10.73.0.1", "fd00:73::1"], ["resolvectl", "domain", "br-app", "~app"],
        ["resolvectl", "dns", "br-db", "10.74.0.1"], ["resolvectl", "domain", "br-db", "~db"]]
    assert line.startswith("host-dns on: 2 bridge(s)")


def test_each_action_reapplies_a_recreated_bridge_and_reverts_a_removed_network(tmp_path, nets):
    host = Host({"br-app": 7, "br-db": 8})
    host.resolver(tmp_path).turn_on(nets)
    host.commands.clear()
    assert host.resolver(tmp_path).apply(nets) == 0 and host.commands == []  # nothing changed: nothing run
    host.links["br-app"] = 12  # re-created: systemd-resolved forgot its settings
    host.resolver(tmp_path).apply(nets[:1])  # db's network removed, its bridge still there for a moment
    assert host.commands == [["resolvectl", "dns", "br-app", "10.73.0.1", "fd00:73::1"],
                             ["resolvectl", "domain", "br-app", "~app"], ["resolvectl", "revert", "br-db"]]


def test_off_reverts_every_bridge_and_stops_reapplying(tmp_path, nets):
    host = Host({"br-app": 7, "br-db": 8})
    host.resolver(tmp_path).turn_on(nets)
    host.commands.clear()
    assert host.resolver(tmp_path).turn_off() == "host-dns off: 2 bridge(s) reverted"
    assert host.commands == [["resolvectl", "revert", "br-app"], ["resolvectl", "revert", "br-db"]]
    host.commands.clear()
    assert host.resolver(tmp_path).apply(nets) == 0 and host.commands == []


def test_off_by_default_nothing_is_run(tmp_path, nets):
    host = Host({"br-app": 7})
    assert host.resolver(tmp_path).apply(nets) == 0 and host.commands == []


def test_without_systemd_resolved_one_line_says_what_to_configure(tmp_path, nets):
    host = Host({"br-app": 7}, has_resolvectl=False)
    line = host.resolver(tmp_path).turn_on(nets)
    assert "\n" not in line and "*.app to 10.73.0.1" in line and "*.db to 10.74.0.1" in line
    assert host.commands == [] and line == by_hand(nets)


def test_sandbox_mode_is_refused_as_a_usage_error(tmp_path, nets):
    with pytest.raises(NetcoreError) as raised:
        Host({}).resolver(tmp_path, namespace="nct123").turn_on(nets)
    assert raised.value.exit_code == 2 and "host mode only" in str(raised.value)


def test_a_failing_command_is_one_line(tmp_path, nets):
    with pytest.raises(NetcoreError, match=r"host-dns: resolvectl dns br-app 10.73.0.1 fd00:73::1 failed"):
        Host({"br-app": 7}, fail=True).resolver(tmp_path).turn_on(nets)


def test_plan_skips_networks_without_dns_and_bridges_not_there_yet(world):
    internal_default = world.network("bridge", "172.17.0.0/16", "172.17.0.1")  # the default bridge: no DNS
    app = world.network("app", "10.73.0.0/24", "10.73.0.1")
    commands, now = plan([internal_default, app], {"br-bridge": 3}.get, {})
    assert commands == [] and now == {}


def test_dnsd_options_of_the_state_dir_are_words_with_comments_left_out(tmp_path):
    from netcore.dnsd_protocol import OPTIONS_NAME
    from netcore.dnsd_protocol.control import dnsd_options
    assert dnsd_options(str(tmp_path)) == []
    (tmp_path / OPTIONS_NAME).write_text("# metrics for Prometheus\n--metrics  # loopback of the gateway namespace\n"
                                         "--query-log /var/log/q.log --query-log-rate 50\n")
    assert dnsd_options(str(tmp_path)) == ["--metrics", "--query-log", "/var/log/q.log", "--query-log-rate", "50"]
