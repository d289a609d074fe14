"""The host's resolver configuration as a container without embedded DNS gets it (issue 23, item 5): Docker's
rules (moby's libnetwork/internal/resolvconf), pure, and through the engine on the in-memory kernel."""

from __future__ import annotations

import io
from argparse import Namespace

import pytest

from netcore.cli import commands as cli
from netcore.services.resolvconf import (
    DOCKER_DEFAULTS,
    SYSTEMD_RESOLV_CONF,
    ResolvConf,
    choose_source,
    for_container,
    parse,
)
from tests.support.engine_calls import create_network, run_container
from tests.support.fake_kernel import GATEWAY_NS, new_world

world = pytest.fixture(new_world)

HOST = """# the host's
nameserver 127.0.0.1
nameserver 192.0.2.53   # a comment
nameserver fd00::53
nameserver not-an-address
search corp.example lab.example
options edns0 timeout:2
"""


def test_parse_takes_servers_search_and_options():
    assert parse(HOST, "/etc/resolv.conf") == ResolvConf(("127.0.0.1", "192.0.2.53", "fd00::53"),
                                                         ("corp.example", "lab.example"), ("edns0", "timeout:2"),
                                                         "/etc/resolv.conf")
    assert parse("domain a.example\nsearch b.example\n").search == ("b.example",)  # the last one wins
    assert parse("").nameservers == ()


def test_loopback_and_ipv6_servers_are_left_out_and_docker_defaults_fill_an_empty_list():
    copied = for_container(parse(HOST))
    assert copied.nameservers == ("192.0.2.53",) and copied.search == ("corp.example", "lab.example")
    assert not copied.defaulted
    assert for_container(parse(HOST), ipv6=True).nameservers == ("192.0.2.53", "fd00::53")
    only_local = for_container(parse("nameserver 127.0.0.1\nnameserver ::1\n"))
    assert only_local.nameservers == DOCKER_DEFAULTS and only_local.defaulted
    assert for_container(ResolvConf()).nameservers == DOCKER_DEFAULTS


def test_systemd_resolveds_stub_leads_to_the_servers_it_uses():
    files = {"/etc/resolv.conf": "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
             SYSTEMD_RESOLV_CONF: "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch lan\n"}
    chosen = choose_source(files.get, None)
    assert (chosen.source, chosen.nameservers) == (SYSTEMD_RESOLV_CONF, ("192.0.2.1", "192.0.2.2"))
    del files[SYSTEMD_RESOLV_CONF]  # no systemd-resolved file: the stub stays, and is left out as loopback
    assert for_container(choose_source(files.get, None)).defaulted
    mixed = {"/etc/resolv.conf": "nameserver 127.0.0.53\nnameserver 192.0.2.9\n"}  # not the stub alone
    assert choose_source(mixed.get, None).nameservers == ("127.0.0.53", "192.0.2.9")


def test_in_sandbox_mode_the_gateway_namespaces_own_file_comes_first():
    files = {"/etc/resolv.conf": "nameserver 192.0.2.1\n", "/etc/netns/gw/resolv.conf": "nameserver 192.0.2.7\n"}
    assert choose_source(files.get, "gw").nameservers == ("192.0.2.7",)
    assert choose_source(files.get, "other").nameservers == ("192.0.2.1",)
    assert choose_source({}.get, "gw") == ResolvConf()


def resolv(world, engine, name: str) -> str:
    return world.kernel.etc[engine.store.container(name).netns][0]


def test_a_container_on_the_default_bridge_gets_the_hosts_name_servers(world):
    world.kernel.files["/etc/resolv.conf"] = "nameserver 198.51.100.1\n"
    world.kernel.files[f"/etc/netns/{GATEWAY_NS}/resolv.conf"] = HOST
    engine = world.engine()
    run_container(engine, "plain")
    text = resolv(world, engine, "plain")
    assert text.splitlines() == [
        f"# written by netcore: the name servers of /etc/netns/{GATEWAY_NS}/resolv.conf, loopback ones left out "
        "(Docker's rule)", "nameserver 192.0.2.53", "search corp.example lab.example", "options edns0 timeout:2"]
    run_container(engine, "boxed", "none")  # --net none: Docker copies the host's file there too
    assert "nameserver 192.0.2.53" in resolv(world, engine, "boxed")
    run_container(engine, "own", dns=["192.0.2.99"])  # the container's own --dns wins
    assert [line for line in resolv(world, engine, "own").splitlines() if line.startswith("nameserver")] == \
        ["nameserver 192.0.2.99"]
    create_network(engine, "app", ["10.1.0.0/24"])
    run_container(engine, "named", "app")  # a user-defined network: the embedded DNS only
    assert [line for line in resolv(world, engine, "named").splitlines() if line.startswith("nameserver")] == \
        ["nameserver 10.1.0.1"]


def test_with_only_loopback_servers_the_default_bridge_gets_dockers_defaults_and_says_so(world):
    world.kernel.files["/etc/resolv.conf"] = "nameserver 127.0.0.1\n"
    engine = world.engine()
    run_container(engine, "plain")
    lines = resolv(world, engine, "plain").splitlines()
    assert lines[0] == ("# written by netcore: Docker's default name servers (/etc/resolv.conf names none a "
                        "container can use)")
    assert lines[1:] == ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]


def test_network_ls_shows_the_default_bridge_before_the_first_action_without_building_it(world):
    engine = world.engine()
    out = io.StringIO()
    cli.network_ls(engine, Namespace(), out)
    rows = out.getvalue().splitlines()
    assert rows[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    shown_id, name, driver, scope = rows[1].split()
    assert (name, driver, scope) == ("bridge", "bridge", "local") and len(rows) == 2
    assert world.kernel.calls == [] and engine.store.networks() == []  # nothing built, nothing stored
    out = io.StringIO()
    cli.network_inspect(engine, Namespace(names=["bridge"]), out)
    assert '"Subnet": "172.17.0.0/16"' in out.getvalue()
    later = world.engine()
    run_container(later, "plain")  # the first action builds it, with the ID shown
    assert later.store.network("bridge").id[:12] == shown_id
    out = io.StringIO()
    cli.network_ls(later, Namespace(), out)
    assert [line.split()[:2] for line in out.getvalue().splitlines()[1:]] == [[shown_id, "bridge"]]
