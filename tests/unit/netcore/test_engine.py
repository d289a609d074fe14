"""The engine's action frame against an in-memory kernel: record, build, confirm; undo; kills; reconciliation.

No root, no namespace: each test is one state dir (a real store in tmp_path)
and one FakeKernel shared by the "processes" (Engine objects) that act on it.
"""

from __future__ import annotations

import dataclasses
import re
import threading

import pytest

from netcore.errors import NetcoreError
from netcore.kernel.netlink import KernelError
from netcore.model import STATE_CREATING, STATE_REMOVING, STATE_RUNNING
from netcore.store import Store
from netcore.system.privileges import missing_capabilities
from tests.support.engine_calls import connect_container, create_network, run_container
from tests.support.fake_kernel import GATEWAY_NS, Killed, new_world

world = pytest.fixture(new_world)


@pytest.fixture
def app(world):
    """A world with a network `app` (10.1.0.0/24) and a container `web` on it."""
    engine = world.engine()
    create_network(engine, "app", ["10.1.0.0/24"])
    run_container(engine, "web", "app")
    return world


def test_an_engine_is_built_without_root_and_capabilities_are_read_from_proc_status(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000001000\n")  # CAP_NET_ADMIN (bit 12) only
    assert missing_capabilities(str(status)) == ["CAP_SYS_ADMIN"]
    status.write_text("CapEff:\t000001ffffffffff\n")
    assert missing_capabilities(str(status)) == []


def test_run_records_then_builds_then_confirms(world):
    engine = world.engine()
    network = create_network(engine, "app", ["10.1.0.0/24"])
    seen = []
    reader = Store.open_readonly(engine.ctx.state_dir)  # the /etc files are written on another thread

    def observe(method, arg):
        seen.append((method, [c.state for c in reader.containers()], [e.state for e in reader.endpoints()]))
    world.kernel.observer = observe
    container = run_container(engine, "web", "app")
    world.kernel.observer = None
    reader.close()
    assert seen[0][0] == "ensure" and seen[0][1:] == ([], [])  # the lock is taken first; nothing recorded yet
    builds = [s for s in seen if s[0] in ("create_namespace", "attach_endpoint", "write_etc")]
    assert [b[0] for b in builds if b[0] != "write_etc"] == ["create_namespace", "attach_endpoint"]
    assert sorted(b[0] for b in builds) == ["attach_endpoint", "create_namespace", "write_etc"]
    assert all(b[1:] == ([STATE_CREATING], [STATE_CREATING]) for b in builds)  # recorded before built
    assert engine.store.container("web").state == STATE_RUNNING  # then confirmed
    [endpoint] = engine.store.endpoints()
    inside = world.kernel.namespaces[container.netns]
    assert inside.links["eth0"].addresses == ["10.1.0.2/24"] and inside.default_routes == {4: "10.1.0.1"}
    assert world.kernel.gateway.links[endpoint.host_ifname].master == network.bridge
    assert "nameserver 10.1.0.1" in world.kernel.etc[container.netns][0]
    assert world.dnsd.syncs >= 2  # dnsd synced after each action
    world.assert_consistent(engine)


def test_a_containers_etc_files_are_written_while_its_namespace_is_made(world):
    """The /etc files go on a second thread, beside the namespace and the links (both mostly the kernel's
    work, without the GIL): the namespace's creation here waits until the files are being written, which
    the old order (files after the links) never reached; and a failure of either while the other is under
    way leaves nothing of the container."""
    engine = world.engine()
    create_network(engine, "app", ["10.1.0.0/24"])
    writing, waits = threading.Event(), []  # whether each namespace's creation saw its files being written
    world.kernel.observer = lambda method, arg: (writing.set() if method == "write_etc" else
                                                 method == "create_namespace" and waits.append(writing.wait(2)))
    world.kernel.fail_at("write_etc", KernelError("no space left on device"))
    with pytest.raises(NetcoreError, match="no space left"):
        run_container(engine, "web", "app")
    world.assert_consistent(engine)
    writing.clear()
    world.kernel.fail_at("attach_endpoint", KernelError("the kernel refused"))
    with pytest.raises(NetcoreError, match="the kernel refused"):
        run_container(engine, "web", "app")
    world.assert_consistent(engine)  # the files written meanwhile were removed with the rest
    writing.clear()
    container = run_container(engine, "web", "app")
    world.kernel.observer = None
    assert waits == [True, True, True] and "nameserver 10.1.0.1" in world.kernel.etc[container.netns][0]
    world.assert_consistent(engine)


def test_rm_leaves_the_veth_to_the_namespace_deletion_after_taking_it_off_the_bridge_and_disconnect_deletes_it(app):
    """A removed container's veth is set down and off its bridge, then its namespace deleted, which deletes the
    pair (the kernel's RCU waits stay off `rm`); a disconnect, whose namespace stays, deletes the veth itself."""
    engine = app.engine()
    create_network(engine, "db", ["10.2.0.0/24"])
    connect_container(engine, "db", "web")
    host_ifnames = {e.network_id: e.host_ifname for e in engine.store.endpoints()}
    db = engine.store.network("db")
    app.kernel.calls.clear()
    engine.disconnect(db.name, "web")
    assert ("delete_link", host_ifnames[db.id]) in app.kernel.calls
    assert host_ifnames[db.id] not in app.kernel.gateway.links
    veth = host_ifnames[engine.store.network("app").id]
    seen = []  # each call, with the veth as it is when the call begins
    links = app.kernel.gateway.links
    app.kernel.observer = lambda method, arg: seen.append(
        (method, arg, dataclasses.replace(links[veth]) if veth in links else None))
    engine.remove_containers(["web"])
    app.kernel.observer = None
    calls = [(method, arg) for method, arg, _ in seen if method in ("release_link", "delete_link", "delete_namespace")]
    assert [method for method, _ in calls] == ["release_link", "delete_namespace"] and calls[0][1] == veth
    [at_deletion] = [link for method, _, link in seen if method == "delete_namespace"]
    assert not at_deletion.up and at_deletion.master is None  # out of service before the namespace goes
    assert veth not in app.kernel.gateway.links  # the namespace's deletion took the pair along
    app.assert_consistent(engine)


@pytest.mark.parametrize("method", ["create_namespace", "attach_endpoint", "configure_container_interface",
                                    "write_etc"])
def test_a_failed_run_is_undone_in_the_kernel_and_the_store(app, method):
    engine = app.engine()
    app.kernel.fail_at(method, KernelError("the kernel refused"))
    with pytest.raises(NetcoreError, match="the kernel refused"):
        run_container(engine, "db", "app")
    assert engine.store.find_container("db") is None
    app.assert_consistent(engine)
    assert run_container(engine, "db", "app")  # and the next one works, with the address the failed one had
    assert engine.store.endpoints_of_container(engine.store.container("db").id)[0].ipv4 == "10.1.0.3"


def test_a_failed_network_create_and_connect_are_undone(app):
    engine = app.engine()
    app.kernel.fail_at("create_bridge", KernelError("cannot create bridge"))
    with pytest.raises(NetcoreError, match="cannot create bridge"):
        create_network(engine, "other", ["10.2.0.0/24"])
    assert engine.store.find_network("other") is None
    create_network(engine, "other", ["10.2.0.0/24"])
    app.kernel.fail_at("configure_container_interface", KernelError("no address"))
    with pytest.raises(NetcoreError, match="no address"):
        connect_container(engine, "other", "web")
    assert [e.ifname for e in engine.store.endpoints()] == ["eth0"]
    assert list(app.kernel.namespaces[engine.store.container("web").netns].links) == ["lo", "eth0"]
    app.assert_consistent(engine)


def test_a_listener_dnsd_cannot_open_undoes_run(app):
    engine = app.engine()
    app.dnsd.down = {"10.1.0.1": "cannot listen on 10.1.0.1 port 53: address already in use"}
    with pytest.raises(NetcoreError, match=re.escape("container db not created: dnsd cannot listen on 10.1.0.1")):
        run_container(engine, "db", "app")
    assert engine.store.find_container("db") is None
    app.assert_consistent(engine)


def _run(engine):
    run_container(engine, "db", "app")


def _connect(engine):
    connect_container(engine, "other", "web")


def _disconnect(engine):
    engine.disconnect("app", "web")


def _rm(engine):
    engine.remove_containers(["web"])


def _network_create(engine):
    create_network(engine, "other", ["10.2.0.0/24"])


def _network_rm(engine):
    engine.remove_network("spare")


# (action, kernel call it is killed at, the state it leaves recorded, the note the next command prints)
KILLS = [
    (_run, "attach_endpoint", STATE_CREATING, "removed half-created container db"),
    (_run, "write_etc", STATE_CREATING, "removed half-created container db"),
    (_connect, "configure_container_interface", STATE_CREATING, "removed half-connected endpoint"),
    (_disconnect, "delete_link", STATE_REMOVING, "removed half-disconnected endpoint"),
    (_rm, "delete_namespace", STATE_REMOVING, "removed half-removed container web"),
    (_network_create, "create_bridge", STATE_CREATING, "removed half-created network other"),
    (_network_rm, "delete_link", STATE_REMOVING, "removed half-removed network spare"),
]


@pytest.mark.parametrize("action, method, left, note", KILLS, ids=[f"{k[0].__name__[1:]}@{k[1]}" for k in KILLS])
def test_a_kill_in_the_middle_leaves_rows_in_transition_and_the_next_command_reconciles(app, action, method, left,
                                                                                       note):
    first = app.engine()
    create_network(first, "spare", ["10.9.0.0/24"])
    if action is _connect:
        create_network(first, "other", ["10.2.0.0/24"])
    app.kernel.kill_at(method)
    with pytest.raises(Killed):
        action(first)
    networks, containers, endpoints = first.store.unsettled()
    assert {r.state for r in (*networks, *containers, *endpoints)} == {left}
    app.kernel.revive()
    after = app.engine()  # the next netcore process
    run_container(after, "later", "app")
    assert any(n.startswith(note) for n in after.notes), after.notes
    app.assert_consistent(after)
    addresses = [e.ipv4 for e in after.store.endpoints_on_network(after.store.network("app").id)]
    assert len(addresses) == len(set(addresses))


def test_after_a_reboot_the_next_command_rebuilds_what_the_store_holds(app):
    before = app.engine()
    web = before.store.container("web")
    app.kernel.reboot()
    app.clock.boot = "boot-2"
    after = app.engine()
    run_container(after, "db", "app")
    bridge = after.store.network("app").bridge
    assert f"recreated missing bridge {bridge} of network app" in after.notes
    assert "rebuilt missing namespace of container web" in after.notes
    assert app.kernel.namespaces[web.netns].links["eth0"].addresses == ["10.1.0.2/24"]
    app.assert_consistent(after)
    again = app.engine()
    run_container(again, "third", "app")
    assert again.notes == []  # the same boot, nothing unsettled: no sweep of the kernel


def test_after_a_reboot_etc_netns_entries_of_lost_rows_are_removed_and_no_others(app):
    """/etc/netns is on disk: after a power cut in the middle of an action (whose commits were not flushed yet,
    Store.deferred_sync) a container's files may outlive its row. The sweep after the reboot removes what
    carries netcore's prefix and belongs to no container; a container's own files and others' stay."""
    before = app.engine()
    web = before.store.container("web")
    lost = f"{GATEWAY_NS}-0123456789ab"  # a container's namespace name whose row the power cut took
    app.kernel.etc[lost] = ("nameserver 10.1.0.1\n", "127.0.0.1\tlocalhost\n")
    app.kernel.etc["someone-else"] = ("nameserver 192.0.2.1\n", "")
    app.kernel.reboot()
    app.clock.boot = "boot-2"
    after = app.engine()
    run_container(after, "db", "app")
    assert f"removed leftover /etc/netns/{lost}" in after.notes
    assert lost not in app.kernel.etc and "someone-else" in app.kernel.etc and web.netns in app.kernel.etc
    del app.kernel.etc["someone-else"]
    app.assert_consistent(after)


def test_leftovers_are_swept_when_the_gateway_namespace_is_made_anew(app):
    engine = app.engine()
    web = engine.store.container("web")
    del app.kernel.namespaces[GATEWAY_NS]  # `ip netns delete` from outside: bridges and host veth ends go
    app.kernel.namespaces[f"{GATEWAY_NS}-deadbeef0000"] = type(app.kernel.namespaces[web.netns])()
    after = app.engine()
    run_container(after, "db", "app")
    assert f"removed leftover namespace {GATEWAY_NS}-deadbeef0000" in after.notes
    assert "rebuilt missing interface eth0 of container web" in after.notes
    app.assert_consistent(after)


def test_a_stray_veth_on_a_bridge_is_removed_in_a_sweep(app):
    engine = app.engine()
    bridge = engine.store.network("app").bridge
    app.kernel.create_namespace("elsewhere")  # not netcore's: its namespace stays, the veth on our bridge goes
    app.kernel.attach_endpoint("elsewhere", "vethstray", "eth0", bridge, 1500, "02:00:00:00:00:01", False)
    app.clock.boot = "boot-2"  # a sweep runs after a reboot (here: the boot ID alone changed)
    after = app.engine()
    run_container(after, "db", "app")
    assert after.notes == ["removed leftover veth vethstray"]
    assert list(app.kernel.namespaces["elsewhere"].links) == ["lo"]
    del app.kernel.namespaces["elsewhere"]
    app.assert_consistent(after)


# -- issue 23, item 7: repeating a killed removal succeeds; ps shows a transitional state as such -----------------

WEB_ID = ""  # set by the test: the ID of `web`, for the repeat by ID prefix
REPEATS = [  # (the action killed part way and repeated, the kernel call it dies at, what the repeat returns, note)
    (_rm, "delete_namespace", lambda e: [c.name for c in e.remove_containers(["web"])], ["web"],
     "removed half-removed container web"),
    (_rm, "delete_namespace", lambda e: [c.name for c in e.remove_containers([WEB_ID[:6]])], ["web"],
     "removed half-removed container web"),
    (_network_rm, "delete_link", lambda e: e.remove_network("spare").name, "spare",
     "removed half-removed network spare"),
    (_disconnect, "delete_link", lambda e: e.disconnect("app", "web"), None, "removed half-disconnected endpoint"),
]


@pytest.mark.parametrize("action, method, repeat, result, note", REPEATS,
                         ids=["rm", "rm-by-id-prefix", "network-rm", "disconnect"])
def test_repeating_a_killed_removal_succeeds_once_reconciliation_finished_it(app, action, method, repeat, result,
                                                                            note):
    global WEB_ID
    first = app.engine()
    create_network(first, "spare", ["10.9.0.0/24"])
    WEB_ID = first.store.container("web").id
    app.kernel.kill_at(method)
    with pytest.raises(Killed):
        action(first)
    app.kernel.revive()
    again = app.engine()  # the user runs the same command again (a `set -e` script must not stop)
    assert repeat(again) == result
    assert any(n.startswith(note) for n in again.notes), again.notes
    app.assert_consistent(again)


def test_a_name_reconciliation_did_not_remove_is_still_unknown(app):
    first = app.engine()
    app.kernel.kill_at("delete_namespace")
    with pytest.raises(Killed):
        first.remove_containers(["web"])
    app.kernel.revive()
    again = app.engine()
    with pytest.raises(NetcoreError, match=r"^no such container: nosuch$"):
        again.remove_containers(["web", "nosuch"])  # an unknown name still removes nothing else
    assert again.store.containers() == []  # web went by reconciliation, before the names were resolved


def test_ps_shows_a_transitional_state_as_such(app, tmp_path):
    import fcntl
    import io
    import os
    from argparse import Namespace

    from netcore.cli import commands as cli

    first = app.engine()
    run_container(first, "db", "app")
    app.kernel.kill_at("delete_namespace")
    with pytest.raises(Killed):
        first.remove_containers(["web"])
    app.kernel.revive()
    reader = app.engine()
    out = io.StringIO()
    cli.ps(reader, Namespace(quiet=False), out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["CONTAINER", "ID", "NAME", "STATUS"]
    status = {line.split()[1]: line.split("   ")[2].strip() for line in lines[1:]}
    assert status == {"web": "removing (interrupted)", "db": "Up"}
    fd = os.open(os.path.join(app.state_dir, "lock"), os.O_RDWR)  # another netcore process is at it now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        out = io.StringIO()
        cli.ps(reader, Namespace(quiet=False), out)
        assert "removing " in out.getvalue() and "interrupted" not in out.getvalue()
    finally:
        os.close(fd)


# -- no forwarding loops (issue 24 item 5) -------------------------------------------------------------


@pytest.mark.parametrize("servers", [["10.1.0.1"], ["192.0.2.53", "10.1.0.1:53"]])
def test_a_network_whose_dns_is_where_dnsd_serves_is_refused(app, servers):
    engine = app.engine()
    with pytest.raises(NetcoreError, match=re.escape("of network loop is where dnsd serves network app")):
        create_network(engine, "loop", ["10.2.0.0/24"], dns=servers)
    assert engine.store.find_network("loop") is None
    app.assert_consistent(engine)


def test_a_network_whose_dns_is_its_own_gateway_is_refused(world):
    engine = world.engine()
    with pytest.raises(NetcoreError, match="is where dnsd serves network self: dnsd would forward"):
        create_network(engine, "self", ["10.3.0.0/24"], dns=["10.3.0.1"])
    assert engine.store.find_network("self") is None


def test_a_container_whose_dns_is_where_dnsd_serves_is_refused(app):
    engine = app.engine()
    refused = "--dns 10.1.0.1 of container x is where dnsd serves network app"
    with pytest.raises(NetcoreError, match=re.escape(refused)):
        run_container(engine, "x", "app", dns=["10.1.0.1"])
    assert engine.store.find_container("x") is None
    app.assert_consistent(engine)


def test_a_network_on_the_address_another_ones_dns_names_is_refused(world):
    engine = world.engine()
    create_network(engine, "first", ["10.4.0.0/24"], dns=["10.9.0.1"])
    refused = "--dns 10.9.0.1 of network first is where dnsd serves network later"
    with pytest.raises(NetcoreError, match=re.escape(refused)):
        create_network(engine, "later", ["10.9.0.0/24"])
    assert engine.store.find_network("later") is None and engine.store.find_network("first") is not None


def test_another_port_or_another_address_of_the_subnet_is_no_loop(app):
    engine = app.engine()
    create_network(engine, "relayed", ["10.5.0.0/24"], dns=["10.1.0.1:5353", "10.1.0.9"])  # a resolver container
    run_container(engine, "y", "app", dns=["10.1.0.9"])
    app.assert_consistent(engine)
