"""dnsd end to end, in sandbox mode, with clients no one here wrote: dig, glibc's getent, ping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.support.dns import PROBE, container_ip, container_ns, dig
from tests.support.sandbox import wait_for
from tests.support.upstream import FAKE_UPSTREAM


@pytest.fixture
def app(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.61.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app", "--hostname", "webhost")
    sandbox.nc("run", "--name", "client", "--net", "app")
    return sandbox


def test_two_containers_resolve_each_other_with_glibc_ping_and_dig(app):
    assert app.exec("client", "getent", "hosts", "web").stdout.split() == ["10.61.0.2", "web"]
    assert app.exec("web", "getent", "ahosts", "client").stdout.split()[0] == "10.61.0.3"
    ping = app.exec("client", "ping", "-c1", "-W2", "web")
    assert ping.returncode == 0 and "10.61.0.2" in ping.stdout
    assert dig(app, "client", "web") == ("NOERROR", ["10.61.0.2"], "qr rd ra")  # RA set, AA not
    assert dig(app, "client", "+tcp", "web")[:2] == ("NOERROR", ["10.61.0.2"])
    web_id = json.loads(app.nc("inspect", "web").stdout)[0]["Id"]
    for name in ("webhost", web_id[:12], "web.app", "WEB.App.", "web."):
        assert dig(app, "client", name)[:2] == ("NOERROR", ["10.61.0.2"]), name
    out = app.exec("client", "dig", "+noall", "+answer", "wEb").stdout
    assert out.split()[0] == "wEb."  # the answer echoes the question as asked


def test_names_are_answered_the_moment_run_returns_and_gone_when_rm_returns(app):
    for i in range(4):
        app.nc("run", "--name", f"fresh{i}", "--net", "app")
        assert app.exec("client", "getent", "hosts", f"fresh{i}").returncode == 0
        app.nc("rm", f"fresh{i}")
        assert app.exec("client", "getent", "hosts", f"fresh{i}", check=False).returncode == 2


def test_a_name_glibc_asks_again_and_again_follows_its_container(app):
    """glibc asks plain queries without EDNS, which a quiet listener replays in C once answered
    (dnsd/io/_replay.c): the replayed answer follows the container to a new address and goes with it."""
    for _ in range(3):
        assert app.exec("client", "getent", "hosts", "web").stdout.split() == ["10.61.0.2", "web"]
    app.nc("rm", "web")
    app.nc("run", "--name", "web", "--net", "app", "--ip", "10.61.0.9")
    for _ in range(3):
        assert app.exec("client", "getent", "hosts", "web").stdout.split() == ["10.61.0.9", "web"]
    app.nc("rm", "web")
    assert app.exec("client", "getent", "hosts", "web", check=False).returncode == 2


def test_nodata_ptr_and_unknown_names(app):
    assert dig(app, "client", "web", "AAAA")[:2] == ("NOERROR", [])
    assert dig(app, "client", "web", "MX")[:2] == ("NOERROR", [])
    assert dig(app, "client", "web", "TXT")[:2] == ("NOERROR", [])
    assert dig(app, "client", "-x", "10.61.0.2")[:2] == ("NOERROR", ["web.app."])
    # not local and no upstream configured in sandbox mode: NXDOMAIN (no way out), never a made-up answer
    assert dig(app, "client", "nowhere.example")[:2] == ("NXDOMAIN", [])


def test_second_network_names_come_with_connect_and_go_with_disconnect(app):
    app.nc("network", "create", "--subnet", "10.62.0.0/24", "data")
    app.nc("run", "--name", "db", "--net", "data", "--net-alias", "database")
    assert dig(app, "client", "db")[1] == []
    app.nc("network", "connect", "data", "client")
    assert dig(app, "client", "db")[:2] == ("NOERROR", ["10.62.0.2"])
    assert dig(app, "client", "database")[:2] == ("NOERROR", ["10.62.0.2"])
    assert dig(app, "client", "web")[:2] == ("NOERROR", ["10.61.0.2"])  # still sees its first network
    assert "nameserver 10.62.0.1" in app.exec("client", "cat", "/etc/resolv.conf").stdout
    app.nc("network", "disconnect", "data", "client")
    assert dig(app, "client", "db")[1] == []
    assert app.exec("client", "getent", "hosts", "db", check=False).returncode == 2


def test_alias_answers_hold_every_holder_and_rotate_evenly(app):
    for i in (1, 2, 3):
        app.nc("run", "--name", f"svc{i}", "--net", "app", "--net-alias", "svc")
    expected = {container_ip(app, f"svc{i}", "app") for i in (1, 2, 3)}
    status, answers, _ = dig(app, "client", "svc")
    assert status == "NOERROR" and set(answers) == expected and len(answers) == 3
    proc = app.exec("client", sys.executable, PROBE, "first", "10.61.0.1", "svc", "3000")
    tally = json.loads(proc.stdout)
    assert set(tally) == expected
    for count in tally.values():
        assert abs(count - 1000) <= 50, tally  # each first a third of the time, within 5%
    assert app.exec("client", "ping", "-c1", "-W2", "svc").returncode == 0


def test_networks_are_isolated_whichever_gateway_is_asked(app):
    app.nc("network", "create", "--subnet", "10.63.0.0/24", "secret")
    app.nc("run", "--name", "vault", "--net", "secret", "--net-alias", "hidden")
    vault_ip = container_ip(app, "vault", "secret")
    for server in ("@10.61.0.1", "@10.63.0.1"):
        for args in (("vault",), ("vault", "AAAA"), ("hidden",), ("vault.secret",), ("-x", vault_ip)):
            status, answers, _ = dig(app, "client", server, *args)
            assert answers == [] and status != "NOERROR", (server, args, status)
    # and the secret network's own members do see it
    assert dig(app, "vault", "hidden")[:2] == ("NOERROR", [vault_ip])
    assert dig(app, "vault", "web")[1] == []


def test_default_bridge_has_no_names(app):
    app.nc("run", "--name", "plain1")
    app.nc("run", "--name", "plain2")
    assert app.exec("plain1", "getent", "hosts", "plain2", check=False).returncode == 2
    assert dig(app, "client", "plain1")[1] == []


def _start_upstream(sandbox, container: str) -> subprocess.Popen:
    proc = sandbox.spawn_in(container_ns(sandbox, container), sys.executable, FAKE_UPSTREAM,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_forwarding_to_the_containers_and_the_networks_upstream(app):
    app.nc("run", "--name", "upstream", "--net", "app")
    upstream_ip = container_ip(app, "upstream", "app")
    proc = _start_upstream(app, "upstream")
    app.nc("run", "--name", "asker", "--net", "app", "--dns", upstream_ip)
    assert dig(app, "asker", "www.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])
    assert dig(app, "asker", "+tcp", "www.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])
    assert dig(app, "asker", "nx.upstream.test")[:2] == ("NXDOMAIN", [])
    status, answers, flags = dig(app, "asker", "+ignore", "+noedns", "big.upstream.test")
    assert "tc" in flags.split()  # truncated upstream reply passed on with TC...
    status, answers, _ = dig(app, "asker", "big.upstream.test")  # ...so dig retries over TCP
    assert status == "NOERROR" and len(answers) == 40
    assert dig(app, "asker", "web")[:2] == ("NOERROR", ["10.61.0.2"])  # local names never go upstream
    # the network's --dns serves containers that name none of their own
    app.nc("network", "create", "--subnet", "10.64.0.0/24", "--dns", upstream_ip, "fwd")
    app.nc("run", "--name", "fwdclient", "--net", "fwd")
    assert dig(app, "fwdclient", "www.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])
    proc.kill()
    proc.wait()
    assert dig(app, "asker", "new.upstream.test")[:2] == ("SERVFAIL", [])  # asked and failed: SERVFAIL
    assert dig(app, "asker", "www.upstream.test")[:2] == ("NOERROR", ["192.0.2.1"])  # from the cache (issue 16)


def test_queries_from_outside_every_served_subnet_are_refused(app):
    outside = f"{app.prefix}-outside"
    run = lambda *argv: subprocess.run(argv, check=True, capture_output=True)  # noqa: E731
    run("ip", "netns", "add", outside)
    run("ip", "-n", app.prefix, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", outside)
    run("ip", "-n", app.prefix, "addr", "add", "10.250.0.1/30", "dev", "out0")
    run("ip", "-n", app.prefix, "link", "set", "out0", "up")
    run("ip", "-n", outside, "addr", "add", "10.250.0.2/30", "dev", "eth0")
    run("ip", "-n", outside, "link", "set", "eth0", "up")
    run("ip", "-n", outside, "route", "add", "default", "via", "10.250.0.1")
    out = subprocess.run(["ip", "netns", "exec", outside, "dig", "+time=2", "+tries=1", "@10.61.0.1", "web"],
                         capture_output=True, text=True).stdout
    assert "status: REFUSED" in out and "10.61.0.2" not in out


def test_garbage_burst_does_not_stop_or_slow_the_server(app):
    pid = app.dnsd_pid()
    replies = app.exec("client", sys.executable, PROBE, "garbage", "10.61.0.1", "2000").stdout
    assert 2000 // 8 <= int(replies) <= 2000  # at least every opcode-UPDATE packet got NOTIMP
    assert app.dnsd_pid() == pid and os.path.exists(f"/proc/{pid}")
    assert dig(app, "client", "web")[:2] == ("NOERROR", ["10.61.0.2"])
    assert dig(app, "client", "+tcp", "web")[:2] == ("NOERROR", ["10.61.0.2"])


def test_listeners_follow_networks_and_dnsd_follows_the_last_one(app):
    pid = app.dnsd_pid()
    app.nc("network", "create", "--subnet", "10.65.0.0/24", "extra")
    assert dig(app, "client", "@10.65.0.1", "web")[:2] == ("NOERROR", ["10.61.0.2"])
    app.nc("network", "rm", "extra")
    assert dig(app, "client", "@10.65.0.1", "web")[0] == "NO-REPLY"
    assert app.dnsd_pid() == pid  # the other listeners were never restarted
    app.nc("rm", "web", "client")
    app.nc("network", "rm", "app")
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"))  # the last DNS network took dnsd with it


def test_dnsd_killed_is_restarted_by_the_next_command(app):
    pid = app.dnsd_pid()
    os.kill(pid, signal.SIGKILL)  # the dnsd netcore started for this sandbox
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"))
    assert app.exec("client", "getent", "hosts", "web").stdout.split() == ["10.61.0.2", "web"]
    assert app.dnsd_pid() not in (None, pid)


def test_ipv6_network_answers_aaaa_and_ptr(sandbox):
    sandbox.nc("network", "create", "--ipv6", "--subnet", "10.70.0.0/24", "--subnet", "fd00:70::/64", "six")
    sandbox.nc("run", "--name", "a", "--net", "six")
    sandbox.nc("run", "--name", "b", "--net", "six")
    assert dig(sandbox, "a", "b", "AAAA")[:2] == ("NOERROR", ["fd00:70::3"])
    assert dig(sandbox, "a", "b", "A")[:2] == ("NOERROR", ["10.70.0.3"])
    assert dig(sandbox, "a", "-x", "fd00:70::3")[:2] == ("NOERROR", ["b.six."])
    assert sandbox.exec("a", "ping", "-6", "-c1", "-W2", "b").returncode == 0
    inspect = json.loads(sandbox.nc("network", "inspect", "six").stdout)[0]
    assert inspect["EnableIPv6"] is True
    assert inspect["IPAM"]["Config"][1] == {"Subnet": "fd00:70::/64", "Gateway": "fd00:70::1"}
