"""netcore.nftables renders the whole `inet netcore` table; netcore.nft_apply's error paths (no root needed).

Golden files under golden/nft/ hold the expected script of each fixed state;
`UPDATE_GOLDEN=1` rewrites them (review the diff before committing it). When
nft is installed and we are root, every golden script also goes through the
real `nft --check` inside a throwaway network namespace (`unshare --net`: the
namespace exists only as long as that one nft process, so nothing reaches the
host's ruleset).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import shutil
import subprocess

import pytest

from netcore.firewall import FirewallState, NetworkRules, apply as nft_apply, desired_state
from netcore.firewall.nftables import Ruleset, normalize_listing, render
from netcore.model import (
    DEFAULT_BRIDGE,
    DEFAULT_BRIDGE_DEVICE,
    OPT_ICC,
    OPT_MASQUERADE,
    Container,
    Endpoint,
    Network,
    PortBinding,
)

GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden", "nft")


def _id(name: str) -> str:
    return hashlib.sha256(f"network/{name}".encode()).hexdigest()


def net(name: str, subnet: str, **kw) -> NetworkRules:
    defaults = {"id": _id(name), "name": name, "bridge": f"br-{_id(name)[:12]}", "subnet": subnet,
                    "gateway": str(ipaddress.ip_network(subnet)[1])}
    defaults.update(kw)
    return NetworkRules(**defaults)


FRONT = net("front", "10.89.1.0/24")
BACK = net("back", "10.89.2.0/24")
DEFAULT = NetworkRules(id=_id(DEFAULT_BRIDGE), name=DEFAULT_BRIDGE, bridge=DEFAULT_BRIDGE_DEVICE,
                          subnet="172.17.0.0/16", gateway="172.17.0.1", dns=False)

def _container_on_two_networks() -> FirewallState:
    """The state netcore.firewall derives from stored records: `app` and `db` (the latter with ICC off),
    and a container `web` on both, besides `db1` on `db` alone."""
    app = Network(id=_id("app"), name="app", bridge=f"br-{_id('app')[:12]}", subnet="10.89.7.0/24",
                  gateway="10.89.7.1")
    db = Network(id=_id("db"), name="db", bridge=f"br-{_id('db')[:12]}", subnet="10.89.8.0/24", gateway="10.89.8.1",
                 options={OPT_ICC: "false"})
    web = Container(id="a" * 64, name="web", hostname="web", netns="ns-web")
    db1 = Container(id="b" * 64, name="db1", hostname="db1", netns="ns-db1")
    endpoints = [Endpoint(id="1" * 64, container_id=web.id, network_id=app.id, ifname="eth0", host_ifname="veth1",
                          mac="02:42:0a:59:07:02", ipv4="10.89.7.2"),
                 Endpoint(id="2" * 64, container_id=web.id, network_id=db.id, ifname="eth1", host_ifname="veth2",
                          mac="02:42:0a:59:08:02", ipv4="10.89.8.2"),
                 Endpoint(id="3" * 64, container_id=db1.id, network_id=db.id, ifname="eth0", host_ifname="veth3",
                          mac="02:42:0a:59:08:03", ipv4="10.89.8.3")]
    return desired_state([app, db], [web, db1], endpoints)


def _published_ports() -> FirewallState:
    """Issue 14: `web` on a dual-stack `app` publishes on every address, on loopback, on one IPv4 and one
    IPv6 host address; `mail` on `other` (ICC off) publishes one port; `vault` on an internal network has
    a binding that maps nowhere."""
    app = Network(id=_id("app"), name="app", bridge=f"br-{_id('app')[:12]}", subnet="10.89.7.0/24",
                  gateway="10.89.7.1", subnet6="fd00:89:7::/64", gateway6="fd00:89:7::1")
    other = Network(id=_id("other"), name="other", bridge=f"br-{_id('other')[:12]}", subnet="10.89.9.0/24",
                    gateway="10.89.9.1", options={OPT_ICC: "false"})
    vault = Network(id=_id("vault"), name="vault", bridge=f"br-{_id('vault')[:12]}", subnet="10.89.3.0/24",
                    gateway="10.89.3.1", internal=True)
    web, mail, safe = (Container(id=c * 64, name=n, hostname=n, netns=f"ns-{n}")
                       for c, n in (("a", "web"), ("b", "mail"), ("c", "safe")))
    endpoints = [Endpoint(id="1" * 64, container_id=web.id, network_id=app.id, ifname="eth0", host_ifname="veth1",
                          mac="02:42:0a:59:07:02", ipv4="10.89.7.2", ipv6="fd00:89:7::2"),
                 Endpoint(id="2" * 64, container_id=mail.id, network_id=other.id, ifname="eth0", host_ifname="veth2",
                          mac="02:42:0a:59:09:02", ipv4="10.89.9.2"),
                 Endpoint(id="3" * 64, container_id=safe.id, network_id=vault.id, ifname="eth0", host_ifname="veth3",
                          mac="02:42:0a:59:03:02", ipv4="10.89.3.2")]
    ports = [PortBinding(web.id, "tcp", 80, "", 8080), PortBinding(web.id, "udp", 53, "127.0.0.1", 5353),
             PortBinding(web.id, "tcp", 443, "192.0.2.1", 8443), PortBinding(web.id, "tcp", 90, "2001:db8::1", 9000),
             PortBinding(web.id, "sctp", 38412, "", 38412), PortBinding(mail.id, "tcp", 25, "", 2525),
             PortBinding(safe.id, "tcp", 22, "", 2222)]
    return desired_state([app, other, vault], [web, mail, safe], endpoints, ports)


def _macvlan_beside_a_bridge() -> FirewallState:
    """A bridge `app`, a macvlan network `lan` (bridge mode: its shim mv-... holds 192.168.77.79, where dnsd
    listens) with a container, and a private macvlan network `quiet` (no shim): derived from records, so
    the renderer sees what netcore.model derives (no forward chain, no masquerading for macvlan)."""
    app = Network(id=_id("app"), name="app", bridge=f"br-{_id('app')[:12]}", subnet="10.89.7.0/24",
                  gateway="10.89.7.1")
    lan = Network(id=_id("lan"), name="lan", bridge=f"mv-{_id('lan')[:12]}", subnet="192.168.77.0/24",
                  gateway="192.168.77.1", ip_range="192.168.77.64/28", driver="macvlan", routed=False,
                  options={"parent": "eth0", "macvlan_mode": "bridge", "shim_address": "192.168.77.79"})
    quiet = Network(id=_id("quiet"), name="quiet", bridge=f"mv-{_id('quiet')[:12]}", subnet="192.168.78.0/24",
                    gateway="192.168.78.1", driver="macvlan", routed=False,
                    options={"parent": "eth0", "macvlan_mode": "private"})
    c1 = Container(id="c" * 64, name="c1", hostname="c1", netns="ns-c1")
    endpoint = Endpoint(id="4" * 64, container_id=c1.id, network_id=lan.id, ifname="eth0", host_ifname="mvl1",
                        mac="02:42:c0:a8:4d:40", ipv4="192.168.77.64")
    return desired_state([app, lan, quiet], [c1], [endpoint])


def _dns_port_published() -> FirewallState:
    """Issue 23 item 3: `pihole` on a dual-stack `app` publishes port 53 (UDP and TCP) on every address, beside
    `other` and a macvlan network `lan` whose shim dnsd serves; dnsd's addresses keep their port 53."""
    app = Network(id=_id("app"), name="app", bridge=f"br-{_id('app')[:12]}", subnet="10.89.7.0/24",
                  gateway="10.89.7.1", subnet6="fd00:89:7::/64", gateway6="fd00:89:7::1")
    other = Network(id=_id("other"), name="other", bridge=f"br-{_id('other')[:12]}", subnet="10.89.9.0/24",
                    gateway="10.89.9.1")
    lan = Network(id=_id("lan"), name="lan", bridge=f"mv-{_id('lan')[:12]}", subnet="192.168.77.0/24",
                  gateway="192.168.77.1", ip_range="192.168.77.64/28", driver="macvlan", routed=False,
                  options={"parent": "eth0", "macvlan_mode": "bridge", "shim_address": "192.168.77.79"})
    pihole = Container(id="a" * 64, name="pihole", hostname="pihole", netns="ns-pihole")
    endpoint = Endpoint(id="1" * 64, container_id=pihole.id, network_id=app.id, ifname="eth0", host_ifname="veth1",
                        mac="02:42:0a:59:07:02", ipv4="10.89.7.2", ipv6="fd00:89:7::2")
    ports = [PortBinding(pihole.id, "udp", 53, "", 53), PortBinding(pihole.id, "tcp", 53, "", 53)]
    return desired_state([app, other, lan], [pihole], [endpoint], ports)


def _internal_dual_stack() -> FirewallState:
    """Issue 23 item 2: an internal dual-stack network beside a normal one, and an internal macvlan network
    on a dummy parent with a shim (no forward chain: only the gateway namespace's input side is its)."""
    vault = Network(id=_id("vault"), name="vault", bridge=f"br-{_id('vault')[:12]}", subnet="10.89.3.0/24",
                    gateway="10.89.3.1", subnet6="fd00:89:3::/64", gateway6="fd00:89:3::1", internal=True)
    app = Network(id=_id("app"), name="app", bridge=f"br-{_id('app')[:12]}", subnet="10.89.7.0/24",
                  gateway="10.89.7.1")
    dummy = Network(id=_id("dummy"), name="dummy", bridge=f"mv-{_id('dummy')[:12]}", subnet="192.168.78.0/24",
                    gateway="192.168.78.1", driver="macvlan", routed=False, internal=True,
                    options={"parent": "dm-x", "macvlan_mode": "bridge", "shim_address": "192.168.78.254"})
    return desired_state([vault, app, dummy], [], [])


STATES = {
    "published_ports": _published_ports(),
    "dns_port_published": _dns_port_published(),
    "internal_dual_stack": _internal_dual_stack(),
    "macvlan_beside_a_bridge": _macvlan_beside_a_bridge(),
    "container_on_two_networks": _container_on_two_networks(),
    "empty": FirewallState(),
    "one": FirewallState((FRONT,)),
    "two": FirewallState((FRONT, BACK)),
    "internal": FirewallState((net("vault", "10.89.3.0/24", internal=True),)),
    "icc_off": FirewallState((net("quiet", "10.89.4.0/24", icc=False),)),
    "masquerade_off": FirewallState((net("routed", "10.89.5.0/24", masquerade=False),)),
    "ipv6": FirewallState((net("dual", "10.89.6.0/24", subnet6="fd00:89:6::/64", gateway6="fd00:89:6::1"),)),
    "default_and_user": FirewallState((DEFAULT, FRONT)),
}


def golden_path(case: str) -> str:
    return os.path.join(GOLDEN_DIR, f"{case}.nft")


@pytest.mark.parametrize("case", sorted(STATES))
def test_rendering_equals_the_golden_file(case):
    script = render(STATES[case]).script
    path = golden_path(case)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        os.makedirs(GOLDEN_DIR, exist_ok=True)
        with open(path, "w") as f:
            f.write(script)
    with open(path) as f:
        assert script == f.read(), f"rendering of {case} changed; rerun with UPDATE_GOLDEN=1 and review the diff"


def _nft_check_available() -> str | None:
    if os.geteuid() != 0:
        return "nft --check needs CAP_NET_ADMIN (root)"
    if not shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH):
        return "nft is not installed (apt-get install nftables)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is missing"
    return None


@pytest.mark.parametrize("case", sorted(STATES))
def test_the_real_nft_accepts_every_rendering(case):
    reason = _nft_check_available()
    if reason:
        pytest.skip(reason)
    nft = shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH)
    proc = subprocess.run(["unshare", "--net", nft, "--check", "-f", "-"], input=render(STATES[case]).script,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("case", sorted(case for case in STATES if case != "empty"))
def test_the_real_nft_lists_every_rendering_as_rendered(case):
    """What `netcore ps` compares (nft_apply.status): the table nft lists back, normalized, is the rendering,
    so a command that changes nothing does not apply the same table again."""
    reason = _nft_check_available()
    if reason:
        pytest.skip(reason)
    nft = shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH)
    ruleset = render(STATES[case])
    proc = subprocess.run(["unshare", "--net", "sh", "-c", f"{nft} -f - && {nft} list table inet netcore"],
                          input=ruleset.script, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert normalize_listing(proc.stdout) == normalize_listing(ruleset.table)


def test_the_real_nft_rejects_a_broken_script():
    """The check above can fail: the same path refuses a script nft cannot parse."""
    reason = _nft_check_available()
    if reason:
        pytest.skip(reason)
    nft = shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH)
    broken = render(STATES["one"]).script.replace("masquerade", "masquerad", 1)
    proc = subprocess.run(["unshare", "--net", nft, "--check", "-f", "-"], input=broken,
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0 and "Error" in proc.stderr


# -- what the rules say, independently of the golden files ----------------------------------------


def _chain(table: str, name: str) -> str:
    start = table.index(f"\tchain {name} {{")
    return table[start:table.index("\t}", start)]


def test_the_script_replaces_the_table_in_one_transaction_without_reading_it():
    script = render(STATES["two"]).script
    lines = script.splitlines()
    assert lines.index("table inet netcore {}") < lines.index("delete table inet netcore") \
        < lines.index("table inet netcore {")
    assert script.count("delete") == 1  # nothing else is deleted rule by rule


def test_an_empty_state_only_deletes_the_table():
    ruleset = render(FirewallState())
    assert ruleset.empty and ruleset.table == ""
    assert [line for line in ruleset.script.splitlines() if not line.startswith("#")] == [
        "table inet netcore {}", "delete table inet netcore"]


def test_the_rendering_does_not_depend_on_the_order_of_networks():
    assert render(FirewallState((FRONT, BACK, DEFAULT))) == render(FirewallState((DEFAULT, BACK, FRONT)))


def test_each_network_gets_chains_named_after_its_short_id_with_its_name_in_a_comment():
    table = render(STATES["two"]).table
    for network in (FRONT, BACK):
        short = network.id[:12]
        assert f'"{network.bridge}" : jump in-{short}' in table
        assert f'"{network.bridge}" : jump out-{short}' in table
        assert f'comment "network {network.name} on {network.bridge}"' in _chain(table, f"in-{short}")


def test_base_chains_accept_by_policy_at_stated_priorities():
    table = render(STATES["one"]).table
    assert "type filter hook input priority filter - 10; policy accept;" in table
    assert "type filter hook forward priority filter; policy accept;" in table
    assert "type nat hook postrouting priority srcnat; policy accept;" in table
    assert "policy drop" not in table


def test_masquerade_for_a_plain_network():
    table = render(STATES["one"]).table
    assert f'oifname != "{FRONT.bridge}" ip saddr 10.89.1.0/24 masquerade' in _chain(table, "postrouting")


@pytest.mark.parametrize("case", ["internal", "masquerade_off"])
def test_no_masquerade_for_internal_networks_or_with_the_option_off(case):
    assert "masquerade" not in _chain(render(STATES[case]).table, "postrouting")


def test_ipv6_networks_are_masqueraded_and_served_dns_on_both_families():
    table = render(STATES["ipv6"]).table
    assert "ip6 saddr fd00:89:6::/64 masquerade" in _chain(table, "postrouting")
    dns = _chain(table, "input")
    assert "ip saddr 10.89.6.0/24 ip daddr @dnsd4 meta l4proto { tcp, udp } th dport 53 accept" in dns
    assert "ip6 saddr fd00:89:6::/64 ip6 daddr @dnsd6 meta l4proto { tcp, udp } th dport 53 accept" in dns
    assert "elements = { 10.89.6.1 }" in table and "elements = { fd00:89:6::1 }" in table


def test_a_network_admits_replies_and_its_own_bridge_and_drops_everything_else():
    rules = _chain(render(STATES["one"]).table, f"in-{FRONT.id[:12]}").splitlines()[2:]
    assert [rule.strip().split(" comment")[0] for rule in rules] == [
        "ct state established,related accept", f'iifname "{FRONT.bridge}" accept', "counter drop"]


def test_icc_off_drops_routed_traffic_between_its_own_containers():
    network = STATES["icc_off"].networks[0]
    chain = _chain(render(STATES["icc_off"]).table, f"in-{network.id[:12]}")
    assert f'iifname "{network.bridge}" counter drop' in chain
    assert f'iifname "{network.bridge}" accept' not in chain


def test_an_internal_network_lets_nothing_in_or_out():
    network = STATES["internal"].networks[0]
    table = render(STATES["internal"]).table
    assert "ct state established" not in _chain(table, f"in-{network.id[:12]}")
    out = _chain(table, f"out-{network.id[:12]}").splitlines()[2:]
    assert [rule.strip().split(" comment")[0] for rule in out] == [f'oifname "{network.bridge}" return',
                                                                    "counter drop"]


def _rules(table: str, chain: str) -> list[str]:
    """The rules of a chain without their comments (the chain's own comment and hook lines left out)."""
    lines = [line.strip() for line in _chain(table, chain).splitlines()[1:]]
    return [line.split(" comment")[0] for line in lines if not line.startswith(("comment ", "type "))]


def test_an_internal_networks_out_chain_runs_before_any_in_chain():
    """Issue 23 item 2: a published port of another network is a host address too; its in chain accepts
    `ct status dnat`, so the internal network's own chain must decide first."""
    table = render(STATES["published_ports"]).table
    vault = next(n for n in STATES["published_ports"].networks if n.internal)
    assert _rules(table, "forward") == ["iifname vmap @forward-internal", "oifname vmap @forward-in",
                                        "iifname vmap @forward-out"]
    internal = table.split("map forward-internal {")[1].split("}")[0]
    assert f'"{vault.bridge}" : jump out-{vault.short_id}' in internal and internal.count("jump") == 1
    assert vault.bridge not in table.split("map forward-out {")[1].split("}")[0]


def test_an_internal_network_reaches_only_its_own_dnsd_in_the_gateway_namespace():
    """Issue 23 item 2: DNS to its own gateway, replies, IPv6 neighbour discovery; nothing else."""
    table = render(STATES["internal_dual_stack"]).table
    by_name = {n.name: n for n in STATES["internal_dual_stack"].networks}
    vault, app, dummy = by_name["vault"], by_name["app"], by_name["dummy"]
    rules = _rules(table, "input")
    mine = [rule for rule in rules if f'"{vault.bridge}"' in rule]
    assert mine == [
        f'iifname "{vault.bridge}" ip saddr 10.89.3.0/24 ip daddr 10.89.3.1 meta l4proto {{ tcp, udp }} th dport 53 '
        "accept",
        f'iifname "{vault.bridge}" ip6 saddr fd00:89:3::/64 ip6 daddr fd00:89:3::1 meta l4proto {{ tcp, udp }} th '
        "dport 53 accept",
        f'iifname "{vault.bridge}" ct state established,related accept',
        f'iifname "{vault.bridge}" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept',
        f'iifname "{vault.bridge}" counter drop']
    # its sources asking any other dnsd address are dropped as a netcore subnet's source on a foreign link
    drop = "ip saddr @subnets4 ip daddr @dnsd4 meta l4proto { tcp, udp } th dport 53 counter drop"
    assert rules.index(mine[1]) < rules.index(drop) < rules.index(mine[-1])
    assert "elements = { 10.89.3.0/24, 10.89.7.0/24, 192.168.78.0/24 }" in table
    # the shim of an internal macvlan network is held to the same, without IPv6 neighbour discovery
    assert [rule for rule in rules if f'"{dummy.bridge}"' in rule][1:] == [
        f'iifname "{dummy.bridge}" ct state established,related accept', f'iifname "{dummy.bridge}" counter drop']
    # a normal network's containers reach the gateway namespace as on Docker: only its dnsd rule names it
    assert [rule for rule in rules if f'"{app.bridge}"' in rule] == [
        f'iifname "{app.bridge}" ip saddr 10.89.7.0/24 ip daddr @dnsd4 meta l4proto {{ tcp, udp }} th dport 53 accept']


def test_dnsd_is_reached_from_each_networks_own_link_and_the_gateway_namespace():
    """Issue 24 item 1: a netcore subnet's source reaches dnsd's port only on its network's own link (or from the
    gateway namespace itself); dropped on any other link, before dnsd reads it. Sources outside every netcore
    subnet pass, and dnsd REFUSES them."""
    table = render(STATES["macvlan_beside_a_bridge"]).table
    by_name = {n.name: n for n in STATES["macvlan_beside_a_bridge"].networks}
    assert "elements = { 10.89.7.1, 192.168.77.79 }" in table.split("set dnsd4 {")[1].split("}")[0] + "}"
    assert "elements = { 10.89.7.0/24, 192.168.77.0/24 }" in table.split("set subnets4 {")[1].split("}")[0] + "}"
    assert _rules(table, "input") == [
        'iifname "lo" ip daddr @dnsd4 meta l4proto { tcp, udp } th dport 53 accept',
        f'iifname "{by_name["app"].bridge}" ip saddr 10.89.7.0/24 ip daddr @dnsd4 meta l4proto {{ tcp, udp }} '
        "th dport 53 accept",
        f'iifname "{by_name["lan"].bridge}" ip saddr 192.168.77.0/24 ip daddr @dnsd4 meta l4proto '
        "{ tcp, udp } th dport 53 accept",
        # the shim's LAN: what a vepa switch sends back arrives on the parent (the kernel answers ARP for the
        # shim's address there too)
        'iifname "eth0" ip saddr 192.168.77.0/24 ip daddr @dnsd4 meta l4proto { tcp, udp } th dport 53 accept',
        "ip saddr @subnets4 ip daddr @dnsd4 meta l4proto { tcp, udp } th dport 53 counter drop"]
    assert "set dnsd6" not in table and "subnets6" not in table  # no IPv6 address served: no set, no rule
    assert "set dnsd" not in render(FirewallState((DEFAULT,))).table  # the default bridge has no dnsd
    # the default bridge's containers are netcore sources too: on their own link they reach dnsd (REFUSED there)
    table = render(STATES["default_and_user"]).table
    assert 'iifname "netcore0" ip saddr 172.17.0.0/16 ip daddr @dnsd4' in table
    assert "elements = { 10.89.1.0/24, 172.17.0.0/16 }" in table


def test_the_subnet_sets_hold_no_overlap_and_list_as_rendered():
    """nft refuses overlapping interval elements: a subnet inside another is left out (two networks never
    share addresses, but the firewall must not fail on a store that says otherwise); adjacent ones stay apart,
    as nft lists them (checked against the real nft when root)."""
    state = FirewallState((net("a", "10.89.0.0/24"), net("b", "10.89.1.0/24"), net("c", "10.89.0.0/16"),
                           net("d", "10.90.0.0/24")))
    assert "elements = { 10.89.0.0/16, 10.90.0.0/24 }" in render(state).table
    state = FirewallState((net("a", "10.89.0.0/24"), net("b", "10.89.1.0/24")))
    assert "elements = { 10.89.0.0/24, 10.89.1.0/24 }" in render(state).table
    reason = _nft_check_available()
    if reason:
        pytest.skip(reason)
    nft = shutil.which("nft", path=nft_apply.NFT_SEARCH_PATH)
    ruleset = render(state)
    proc = subprocess.run(["unshare", "--net", "sh", "-c", f"{nft} -f - && {nft} list table inet netcore"],
                          input=ruleset.script, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0 and normalize_listing(proc.stdout) == normalize_listing(ruleset.table), proc.stderr


def test_port_53_published_leaves_dnsds_addresses_to_dnsd():
    """Issue 23 item 3: the DNAT chains return dnsd's own addresses first; every other host address maps."""
    table = render(STATES["dns_port_published"]).table
    first = ["ip daddr @dnsd4 meta l4proto { tcp, udp } th dport 53 return",
             "ip6 daddr @dnsd6 meta l4proto { tcp, udp } th dport 53 return"]
    assert _rules(table, "published-prerouting")[:2] == first
    assert _rules(table, "published-output")[:2] == first
    assert "elements = { 10.89.7.1, 10.89.9.1, 192.168.77.79 }" in table
    assert "tcp . 53 : 10.89.7.2 . 53, udp . 53 : 10.89.7.2 . 53" in table
    # other published ports leave the DNAT chains as they were
    assert "return" not in _chain(render(STATES["published_ports"]).table, "published-prerouting")


def test_the_default_bridge_has_no_dns_rule_but_is_isolated_like_any_network():
    table = render(STATES["default_and_user"]).table
    assert "netcore0" not in _chain(table, "dns-untracked-in") and FRONT.gateway in table.split("set dnsd4")[1]
    assert "172.17.0.1" not in table
    assert '"netcore0" : jump in-' in table
    assert "counter drop" in _chain(table, f"in-{DEFAULT.id[:12]}")


def test_the_dns_port_follows_the_state():
    assert "th dport 5353 accept" in render(FirewallState((FRONT,), dns_port=5353)).table


@pytest.mark.parametrize("bad, message", [
    ({"bridge": 'br"; flush ruleset'}, "not an interface name"),
    ({"bridge": "br-waytoolongname"}, "not an interface name"),
    ({"parent": 'eth0"; flush ruleset'}, "parent .* not an interface name"),
    ({"name": "a b"}, "not a valid network name"),
    ({"id": "xyz"}, "hex digits"),
    ({"subnet": "fd00::/64"}, "not an IPv4 subnet"),
    ({"subnet": None, "subnet6": None}, "no subnet"),
])
def test_malformed_networks_are_refused_before_anything_is_rendered(bad, message):
    with pytest.raises(ValueError, match=message):
        render(FirewallState((dataclasses.replace(FRONT, **bad),)))


def test_two_networks_on_one_bridge_are_refused():
    with pytest.raises(ValueError, match="share"):
        render(FirewallState((FRONT, net("other", "10.89.9.0/24", bridge=FRONT.bridge))))


def test_from_network_reads_the_docker_options():
    stored = Network(id=_id("x"), name="x", bridge="br-x", subnet="10.1.0.0/24", gateway="10.1.0.1",
                     options={OPT_ICC: "false", OPT_MASQUERADE: "false"}, internal=True)
    mapped = NetworkRules.from_network(stored)
    assert (mapped.icc, mapped.masquerade, mapped.internal, mapped.dns) == (False, False, True, True)
    default = NetworkRules.from_network(Network(id=_id("d"), name=DEFAULT_BRIDGE, bridge="netcore0",
                                                   subnet="172.17.0.0/16", gateway="172.17.0.1"))
    assert (default.icc, default.masquerade, default.dns) == (True, True, False)
    routed = NetworkRules.from_network(Network(id=_id("r"), name="r", bridge="br-r", subnet="10.2.0.0/24",
                                               gateway="10.2.0.1", options={OPT_MASQUERADE: "false"}))
    assert (routed.masquerade, routed.internal) == (False, False)


def test_normalized_listing_ignores_counters_wrapping_and_element_order_but_not_rules():
    table = render(STATES["two"]).table
    elements = table.split("elements = { ")[1].split(" }")[0].split(", ")
    listed = table.replace(", ".join(elements), ",\n\t\t\t     ".join(reversed(elements)), 1)
    listed = listed.replace("counter drop", "counter packets 12 bytes 3400 drop")
    assert listed != table and normalize_listing(listed) == normalize_listing(table)
    edited = table.replace("ct state established,related accept", "ct state established accept", 1)
    assert normalize_listing(edited) != normalize_listing(table)


# -- nft_apply's errors, with a fake nft ---------------------------------------------------------


def _fake_nft(tmp_path, monkeypatch, body: str) -> None:
    tool = tmp_path / "nft"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    monkeypatch.setattr(nft_apply, "NFT_SEARCH_PATH", str(tmp_path))


def test_missing_nft_names_the_package_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(nft_apply, "NFT_SEARCH_PATH", str(tmp_path))  # an empty directory
    with pytest.raises(nft_apply.NftError) as caught:
        nft_apply.apply(render(STATES["one"]), None)
    assert "apt-get install nftables" in str(caught.value) and "\n" not in str(caught.value)


def test_a_rejected_ruleset_is_one_line_with_nfts_message(tmp_path, monkeypatch):
    _fake_nft(tmp_path, monkeypatch, "cat >/dev/null\n"
              "echo '/dev/stdin:9:3-12: Error: Could not process rule: No such file or directory' >&2\n"
              "echo '\t\tmasquerade' >&2\necho '\t\t^^^^^^^^^^' >&2\nexit 1\n")
    with pytest.raises(nft_apply.NftError) as caught:
        nft_apply.apply(render(STATES["one"]), None)
    assert str(caught.value) == ("nft rejected netcore's ruleset: "
                                 "/dev/stdin:9:3-12: Error: Could not process rule: No such file or directory")


def test_the_script_reaches_nft_on_stdin(tmp_path, monkeypatch):
    seen = tmp_path / "seen"
    _fake_nft(tmp_path, monkeypatch, f'[ "$1 $2" = "-f -" ] && cat > {seen}\n')
    ruleset = render(STATES["one"])
    nft_apply.apply(ruleset, None)
    assert seen.read_text() == ruleset.script


def test_status_compares_the_listing_with_the_rendering(tmp_path, monkeypatch):
    ruleset = render(STATES["one"])
    listing = tmp_path / "listing"
    listing.write_text(ruleset.table.replace("counter drop", "counter packets 1 bytes 2 drop"))
    _fake_nft(tmp_path, monkeypatch, f"cat {listing}\n")
    assert nft_apply.status(ruleset, None) == nft_apply.CURRENT
    assert nft_apply.status(render(STATES["two"]), None) == nft_apply.DIFFERENT
    assert nft_apply.status(Ruleset(script="", table="", digest=""), None) == nft_apply.DIFFERENT
    _fake_nft(tmp_path, monkeypatch, "echo 'Error: No such file or directory; did you mean table x' >&2; exit 1\n")
    assert nft_apply.status(ruleset, None) == nft_apply.MISSING
    assert nft_apply.status(render(FirewallState()), None) == nft_apply.CURRENT


def test_an_unknown_namespace_is_an_error(tmp_path, monkeypatch):
    _fake_nft(tmp_path, monkeypatch, "exit 0\n")
    with pytest.raises(nft_apply.NftError, match="namespace nft-test-no-such-ns does not exist"):
        nft_apply.apply(render(STATES["one"]), "nft-test-no-such-ns")
    with pytest.raises(nft_apply.NftError, match="does not exist"):
        nft_apply.enable_forwarding("nft-test-no-such-ns")


def test_masquerade_off_keeps_only_the_published_ports_own_masquerade():
    """Issue 23 item 10 (moby/moby#46466): with enable_ip_masquerade=false nothing of the network's is NATed on
    its way out; what is kept is the published ports' own: DNATed connections from its own subnet (hairpin)
    and from 127.0.0.0/8, which cannot work without it, and no other source (Docker masquerades every
    host-local source there, `fib saddr type local`)."""
    routed = Network(id=_id("routed"), name="routed", bridge=f"br-{_id('routed')[:12]}", subnet="10.89.5.0/24",
                     gateway="10.89.5.1", subnet6="fd00:89:5::/64", gateway6="fd00:89:5::1",
                     options={OPT_MASQUERADE: "false"})
    web = Container(id="a" * 64, name="web", hostname="web", netns="ns-web")
    endpoint = Endpoint(id="1" * 64, container_id=web.id, network_id=routed.id, ifname="eth0", host_ifname="veth1",
                        mac="02:42:0a:59:05:02", ipv4="10.89.5.2", ipv6="fd00:89:5::2")
    table = render(desired_state([routed], [web], [endpoint], [PortBinding(web.id, "tcp", 80, "", 8080)])).table
    bridge = f'"{routed.bridge}"'
    assert _rules(table, "postrouting") == [
        f"oifname {bridge} ct status dnat ip saddr {{ 10.89.5.0/24, 127.0.0.0/8 }} masquerade",
        f"oifname {bridge} ct status dnat ip6 saddr fd00:89:5::/64 masquerade"]
