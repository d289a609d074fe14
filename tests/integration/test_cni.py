"""The netcore-dns CNI plugin in real chains: Debian's bridge + host-local, then netcore-dns (or dnsname, the
reference), invoked as a runtime invokes them, in a sandbox namespace (issue 29).

Clients are dig in the containers' namespaces; upstream is the box's fake one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.cni_runtime import CniBox, PluginFailed, dig, unavailable, wait_gone

REASON = unavailable("dnsname")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def box():
    sandbox = CniBox()
    try:
        yield sandbox
    finally:
        sandbox.close()
        assert sandbox.leftovers() == [], "teardown leaked namespaces"


def cid(n: int) -> str:
    """A container ID as Podman makes them: 64 hex digits, distinct in the first 12."""
    return hashlib.sha256(f"container {n}".encode()).hexdigest()


def rows(box: CniBox) -> list[tuple]:
    path = os.path.join(box.state_dir, "cni.db")
    if not os.path.exists(path):
        return []
    with sqlite3.connect(path) as db:
        return db.execute("SELECT container_id, ifname, network, name FROM attachments ORDER BY 1, 2, 3").fetchall()


def test_add_answers_names_at_once_and_passes_the_result_on(box):
    chain = box.chain("app", "10.71.0.0/24")
    web, client = box.container("web"), box.container("client")
    result = chain.add(cid(1), web, name="web", aliases=["api", "www"], args={"NERDCTL_CNI_DHCP_HOSTNAME": "webhost"})
    # prevResult passed on, the gateway put first among the nameservers
    assert result["dns"]["nameservers"][0] == "10.71.0.1"
    assert [ip["address"] for ip in result["ips"]] == ["10.71.0.2/24"]
    assert result["interfaces"][2]["sandbox"] == web
    chain.add(cid(2), client, name="client")
    gateway = "10.71.0.1"
    for name in ("web", "WEB", "api", "www", "webhost", cid(1)[:12], "web.app", "api.app"):
        assert dig(box, client, gateway, name) == ["10.71.0.2"], name
    assert dig(box, client, gateway, "2.0.71.10.in-addr.arpa", "PTR") == ["web.app."]
    assert dig(box, client, gateway, "name.upstream.test") == ["192.0.2.1"]  # forwarded to the box's upstream
    proc = box.in_container(client, "dig", "+tries=1", "+time=2", f"@{gateway}", "nothere")
    assert "NXDOMAIN" in proc.stdout
    # the container's own resolver, from the result: Debian's getent through glibc, resolv.conf naming the gateway
    conf = os.path.join(box.workdir, "client-resolv.conf")
    with open(conf, "w") as out:
        out.write("".join(f"nameserver {server}\n" for server in result["dns"]["nameservers"][:1]))
    getent = subprocess.run([*box.enter[:2], f"--net={client}", "unshare", "-m", "sh", "-c",
                             f"mount --bind {conf} /etc/resolv.conf && getent hosts web"],
                            capture_output=True, text=True, timeout=30)
    assert getent.stdout.split()[:1] == ["10.71.0.2"], getent.stderr


def test_aliases_rotate_among_holders(box):
    chain = box.chain("rot", "10.72.0.0/24")
    for n in range(3):
        chain.add(cid(n + 1), box.container(f"a{n}"), name=f"api{n}", aliases=["api"])
    client = box.container("client")
    chain.add(cid(9), client, name="client")
    firsts = set()
    for _ in range(6):
        answer = dig(box, client, "10.72.0.1", "api")
        assert sorted(answer) == ["10.72.0.2", "10.72.0.3", "10.72.0.4"]
        firsts.add(answer[0])
    assert len(firsts) > 1  # the first record rotates


def test_networks_are_isolated_and_a_container_on_two_resolves_both(box):
    one, two = box.chain("one", "10.73.0.0/24"), box.chain("two", "10.74.0.0/24")
    a, b, both = box.container("a"), box.container("b"), box.container("both")
    one.add(cid(1), a, name="alpha")
    two.add(cid(2), b, name="beta")
    one.add(cid(3), both, name="both", ifname="eth0")
    two.add(cid(3), both, name="both", ifname="eth1")
    assert dig(box, a, "10.73.0.1", "alpha") == ["10.73.0.2"]
    assert dig(box, a, "10.73.0.1", "beta") == []  # on "one" only: not answered "two"'s names
    assert dig(box, b, "10.74.0.1", "alpha") == []
    assert dig(box, both, "10.73.0.1", "beta") == ["10.74.0.2"]  # on both: answered both, on either gateway
    assert dig(box, both, "10.74.0.1", "alpha") == ["10.73.0.2"]
    assert sorted(dig(box, a, "10.73.0.1", "both")) == ["10.73.0.3"]  # from "one": its address there
    assert len(box.dnsd_pids()) == 2  # one dnsd (and its supervisor) for both networks
    two.delete(cid(3), both, ifname="eth1")
    assert dig(box, both, "10.73.0.1", "beta") == []  # gone at once


def test_del_is_idempotent_and_the_last_one_stops_dnsd(box):
    chain = box.chain("del", "10.75.0.0/24")
    web, client = box.container("web"), box.container("client")
    chain.add(cid(1), web, name="web")
    chain.add(cid(2), client, name="client")
    pids = box.dnsd_pids()
    assert len(pids) == 2
    chain.delete(cid(1), web, name="web")
    assert dig(box, client, "10.75.0.1", "web") == []  # gone when DEL returns
    # DEL again, DEL of a container never added, DEL without prevResult: all succeed (SPEC.md, DEL)
    dns_plugin = chain.conflist["plugins"][-1]
    for container_id, previous in ((cid(1), chain.results.get((cid(1), "eth0"))), (cid(7), None)):
        env = {"CNI_CONTAINERID": container_id, "CNI_NETNS": "/run/netns/nothere", "CNI_IFNAME": "eth0"}
        proc = chain.exec_plugin("netcore-dns", "DEL", env, chain.plugin_config(dns_plugin, {}, previous))
        assert proc.returncode == 0 and proc.stdout == ""
    assert rows(box) == [(cid(2), "eth0", "del", "client")]
    chain.delete(cid(2), client, name="client")
    assert wait_gone(pids)  # the last DEL stopped dnsd and its supervisor
    assert rows(box) == []
    for round_ in range(3):  # an ADD right after the last DEL starts a new dnsd, and is answered when it returns
        address = chain.add(cid(1), web, name="web")["ips"][0]["address"].split("/")[0]
        chain.add(cid(2), client, name="client")
        assert dig(box, client, "10.75.0.1", "web") == [address], round_
        pids = box.dnsd_pids()
        chain.delete(cid(2), client, name="client")
        chain.delete(cid(1), web, name="web")
        assert wait_gone(pids) and rows(box) == []


def test_dnsd_is_supervised_and_restarted(box):
    chain = box.chain("sup", "10.76.0.0/24")
    web, client = box.container("web"), box.container("client")
    chain.add(cid(1), web, name="web")
    chain.add(cid(2), client, name="client")
    with open(os.path.join(box.state_dir, "dnsd.pid")) as pid_file:
        dnsd = int(pid_file.read())
    os.kill(dnsd, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and dig(box, client, "10.76.0.1", "web") != ["10.76.0.2"]:
        time.sleep(0.1)
    assert dig(box, client, "10.76.0.1", "web") == ["10.76.0.2"]
    chain.check(cid(1), web, name="web", plugins=("netcore-dns",))


def test_check_verifies_that_dnsd_answers(box):
    chain = box.chain("chk", "10.77.0.0/24")
    web = box.container("web")
    chain.add(cid(1), web, name="web", aliases=["api"])
    chain.check(cid(1), web, name="web")  # bridge's and host-local's CHECK too, then ours
    # the registration gone behind the runtime's back: CHECK fails with the plugin's code
    with sqlite3.connect(os.path.join(box.state_dir, "cni.db")) as db:
        db.execute("DELETE FROM attachments")
    with pytest.raises(PluginFailed) as failed:
        chain.check(cid(1), web, name="web", plugins=("netcore-dns",))
    assert failed.value.document["code"] == 100


def test_status_version_and_gc(box):
    chain = box.chain("gc", "10.78.0.0/24")  # Debian's bridge speaks 1.0.0 at most; STATUS and GC are 1.1.0's
    plugin = chain.conflist["plugins"][-1]
    a, b = box.container("a"), box.container("b")
    chain.add(cid(1), a, name="a")
    chain.add(cid(2), b, name="b")
    status = chain.exec_plugin("netcore-dns", "STATUS", {}, status_config := {**chain.plugin_config(plugin, {}, None),
                                                                             "cniVersion": "1.1.0"})
    assert status.returncode == 0 and status.stdout == ""
    version = chain.exec_plugin("netcore-dns", "VERSION", {}, {"cniVersion": "1.1.0"})
    assert json.loads(version.stdout)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    config = {**status_config,
              "cni.dev/valid-attachments": [{"containerID": cid(2), "ifname": "eth0"}]}
    chain.exec_plugin("netcore-dns", "GC", {}, config)
    assert rows(box) == [(cid(2), "eth0", "gc", "b")]
    assert dig(box, b, "10.78.0.1", "a") == []
    # dnsd gone while containers are registered: STATUS says so (51)
    pids = box.dnsd_pids()
    killed = []
    for name in ("dnsd-supervisor.pid", "dnsd.pid"):  # both read first: dnsd goes with its supervisor
        with open(os.path.join(box.state_dir, name)) as pid_file:
            killed.append(int(pid_file.read()))
    for pid in killed:  # the supervisor first, or it starts dnsd anew
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids)
    status = chain.exec_plugin("netcore-dns", "STATUS", {}, status_config, check=False)
    assert status.returncode == 1 and json.loads(status.stdout)["code"] == 51


def test_a_0_4_0_configuration(box):
    chain = box.chain("old", "10.79.0.0/24", version="0.4.0")
    web, client = box.container("web"), box.container("client")
    result = chain.add(cid(1), web, name="web")
    assert result["cniVersion"] == "0.4.0" and result["dns"]["nameservers"] == ["10.79.0.1"]
    chain.add(cid(2), client, name="client")
    assert dig(box, client, "10.79.0.1", "web") == ["10.79.0.2"]
    chain.check(cid(1), web, name="web")
    chain.delete(cid(1), web, name="web")


def test_bad_input_registers_nothing_and_starts_nothing(box):
    chain = box.chain("bad", "10.80.0.0/24")
    plugin = chain.conflist["plugins"][-1]
    env = {"CNI_CONTAINERID": cid(1), "CNI_NETNS": box.container("web"), "CNI_IFNAME": "eth0"}
    cases = [
        (chain.plugin_config(plugin, {}, None), 7),  # no prevResult: not chained
        ({**chain.plugin_config(plugin, {}, {"cniVersion": "1.0.0", "ips": [{"address": "10.80.0.2/24"}]})}, 7),
        ({**chain.plugin_config(plugin, {}, None), "cniVersion": "9.9.9"}, 1),
    ]
    for config, code in cases:
        proc = chain.exec_plugin("netcore-dns", "ADD", env, config, check=False)
        assert proc.returncode != 0
        document = json.loads(proc.stdout)
        assert document["code"] == code and document["msg"] and "details" in document
    proc = subprocess.run([*box.enter, os.path.join(box.plugin_dir, "netcore-dns")], input="{oops",
                          capture_output=True, text=True, env={"CNI_COMMAND": "ADD", **env}, timeout=30)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 6 and "Traceback" not in proc.stderr
    assert rows(box) == [] and box.dnsd_pids() == []


def test_50_parallel_adds_and_dels(box):
    chain = box.chain("par", "10.81.0.0/24")
    client = box.container("client")
    chain.add(cid(999), client, name="client")
    namespaces = [box.container(f"p{n}") for n in range(50)]

    def add(n):
        return chain.add(cid(n), namespaces[n], name=f"c{n}", aliases=["many"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(add, range(50)))
    addresses = {f"c{n}": results[n]["ips"][0]["address"].split("/")[0] for n in range(50)}
    assert len(set(addresses.values())) == 50
    for n in (0, 17, 49):
        assert dig(box, client, "10.81.0.1", f"c{n}") == [addresses[f"c{n}"]]
    assert sorted(dig(box, client, "10.81.0.1", "many")) == sorted(addresses.values())
    assert len(rows(box)) == 51 and len(box.dnsd_pids()) == 2
    # half go while the other half come back: DELs and ADDs at once
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda n: chain.delete(cid(n), namespaces[n], name=f"c{n}"), range(25)))
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(chain.delete, cid(n), namespaces[n], f"c{n}") for n in range(25, 50)]
        futures += [pool.submit(add, n) for n in range(25)]
        for future in futures:
            future.result()
    assert sorted(name for *_, name in rows(box)) == sorted(["client", *(f"c{n}" for n in range(25))])
    assert dig(box, client, "10.81.0.1", "c30") == []
    assert len(dig(box, client, "10.81.0.1", "many")) == 25
    # and all at once to none: dnsd stops after the last
    pids = box.dnsd_pids()
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [pool.submit(chain.delete, cid(n), namespaces[n], f"c{n}") for n in range(25)]
        futures.append(pool.submit(chain.delete, cid(999), client, "client"))
        for future in futures:
            future.result()
    assert rows(box) == [] and wait_gone(pids)


def test_plugins_killed_mid_call_leave_a_consistent_state(box):
    """SIGKILL netcore-dns at random points of ADD and DEL (its stdin held open, so it waits there first, then
    at random delays after): every registration is whole or absent, dnsd answers exactly what is registered,
    and the runtime's DEL (which follows a failed ADD) cleans up."""
    chain = box.chain("kil", "10.82.0.0/24")
    client = box.container("client")
    chain.add(cid(999), client, name="client")
    plugin = chain.conflist["plugins"][-1]
    rng = random.Random(29)
    killed = []
    for n in range(12):
        netns = box.container(f"k{n}")
        previous = chain.exec_plugin("bridge", "ADD", {"CNI_CONTAINERID": cid(n), "CNI_NETNS": netns,
                                                       "CNI_IFNAME": "eth0"},
                                     chain.plugin_config(chain.conflist["plugins"][0], {}, None))
        config = chain.plugin_config(plugin, {}, json.loads(previous.stdout))
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid(n), "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
               "CNI_ARGS": f"K8S_POD_NAME=k{n}", "PATH": os.environ["PATH"]}
        proc = subprocess.Popen([*box.enter, os.path.join(box.plugin_dir, "netcore-dns")], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
        time.sleep(rng.uniform(0.0, 0.3))  # a plugin call takes 40 to 150 ms here: before, during, after its write
        proc.send_signal(signal.SIGKILL)  # nsenter exec's the plugin: this is the plugin
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        chain.results[(cid(n), "eth0")] = json.loads(previous.stdout)
        killed.append((n, netns, proc.returncode))
    registered = {row[0]: row for row in rows(box)}
    for n, _, _ in killed:
        if cid(n) in registered:  # whole: its row names it, and dnsd answers it (after a sync, as any ADD makes)
            assert registered[cid(n)][3] == f"k{n}"
    chain.add(cid(998), box.container("after"), name="after")  # syncs dnsd
    for n, _, _ in killed:
        expected = [f"10.82.0.{n + 3}"] if cid(n) in registered else []
        assert dig(box, client, "10.82.0.1", f"k{n}") == expected
    for n, netns, _ in killed:  # the runtime deletes what failed to add
        chain.delete(cid(n), netns, name=f"k{n}")
    assert sorted(name for *_, name in rows(box)) == ["after", "client"]
    assert box.dnsd_pids()


def test_stale_registrations_are_swept(box):
    """A runtime that never called DEL: the registration is swept once its namespace is gone; after a reboot
    (another boot ID) everything registered before it is."""
    chain = box.chain("stl", "10.83.0.0/24")
    gone, client = box.container("gone"), box.container("client")
    chain.add(cid(1), gone, name="gone")
    chain.add(cid(2), client, name="client")
    assert dig(box, client, "10.83.0.1", "gone") == ["10.83.0.2"]
    box.remove_container(gone)  # the container died, the runtime with it: no DEL
    chain.add(cid(3), box.container("new"), name="new")  # the next ADD sweeps
    assert dig(box, client, "10.83.0.1", "gone") == []
    assert sorted(name for *_, name in rows(box)) == ["client", "new"]
    with sqlite3.connect(os.path.join(box.state_dir, "cni.db")) as db:  # as if the machine had rebooted since
        db.execute("UPDATE meta SET value = 'an-earlier-boot' WHERE key = 'boot_id'")
    fresh = box.container("fresh")
    chain.add(cid(4), fresh, name="fresh")
    assert [name for *_, name in rows(box)] == ["fresh"]
    assert dig(box, fresh, "10.83.0.1", "client") == []


@pytest.mark.parametrize("plugin", ["netcore-dns", "dnsname"])
def test_same_checks_against_dnsname(box, plugin):
    """The reference: Debian's dnsname (dnsmasq per network) passes the same name and alias checks in the same
    chain; NAME.NETWORK, the short ID and isolation by client are dnsd's own (docs/cni.md)."""
    chain = box.chain("ref", "10.84.0.0/24", dns=plugin)
    web, client = box.container("web"), box.container("client")
    result = chain.add(cid(1), web, name="web", aliases=["api"])
    assert result["dns"]["nameservers"][0] == "10.84.0.1"
    chain.add(cid(2), client, name="client")
    for name in ("web", "api", "web.dns.podman" if plugin == "dnsname" else "web.ref"):
        assert dig(box, client, "10.84.0.1", name) == ["10.84.0.2"], name
    chain.delete(cid(1), web, name="web")
    assert dig(box, client, "10.84.0.1", "web") == []
    chain.delete(cid(2), client, name="client")


def test_a_dnsd_that_goes_away_while_the_call_is_written_is_one_that_declined_it(box):
    """The executable hands the call to dnsd's socket; a dnsd stopping (the last DEL) may take the connection
    and close it before the call is written. That write then fails (EPIPE): the plugin runs the call itself,
    it is not killed by SIGPIPE (status -13, seen once in the ADD racing the last DEL). Here a listener
    takes the connection and shuts its reading down before the plugin has read its standard input."""
    os.makedirs(box.state_dir, mode=0o700, exist_ok=True)  # made by the first call otherwise
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.path.join(box.state_dir, "cni.sock"))
    listener.listen(1)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_COMMAND": "VERSION", "CNI_PATH": box.plugin_dir}
    plugin = subprocess.Popen([*box.enter, os.path.join(box.plugin_dir, "netcore-dns")], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listener.settimeout(30)
        taken, _ = listener.accept()
        taken.shutdown(socket.SHUT_RD)  # gone, as far as the plugin's write is concerned
        out, err = plugin.communicate('{"cniVersion": "1.0.0"}', timeout=60)
        taken.close()
    finally:
        listener.close()
        os.unlink(os.path.join(box.state_dir, "cni.sock"))
        if plugin.poll() is None:
            plugin.kill()
    assert plugin.returncode == 0, (plugin.returncode, out, err)
    assert "1.0.0" in json.loads(out)["supportedVersions"]


def test_the_python_script_plugin():
    """`dnsd cni-install --python-only` (no C compiler): the whole plugin in Python on every call, same behaviour."""
    box = CniBox(python_only=True)
    try:
        with open(os.path.join(box.plugin_dir, "netcore-dns")) as script:
            assert script.readline().endswith(" -IS\n")
        chain = box.chain("py", "10.85.0.0/24")
        web, client = box.container("web"), box.container("client")
        chain.add(cid(1), web, name="web", aliases=["api"])
        chain.add(cid(2), client, name="client")
        assert dig(box, client, "10.85.0.1", "api") == ["10.85.0.2"]
        chain.check(cid(1), web, name="web", plugins=("netcore-dns",))
        pids = box.dnsd_pids()
        chain.delete(cid(1), web, name="web")
        assert dig(box, client, "10.85.0.1", "web") == []
        chain.delete(cid(2), client, name="client")
        assert wait_gone(pids) and rows(box) == []
    finally:
        box.close()
    assert box.leftovers() == []


def test_forwarding_through_the_cache_and_metrics(box):
    """dnsd.options in the state dir reaches the dnsd the plugin starts: metrics on the box's loopback count
    the CNI network's queries; a forwarded name asked twice goes upstream once (the cache)."""
    os.makedirs(box.state_dir, mode=0o700)
    with open(os.path.join(box.state_dir, "dnsd.options"), "w") as options:
        options.write("--metrics 127.0.0.1:9153  # Prometheus, on the runtime namespace's loopback\n")
    chain = box.chain("met", "10.86.0.0/24")
    web, client = box.container("web"), box.container("client")
    chain.add(cid(1), web, name="web")
    chain.add(cid(2), client, name="client")
    assert dig(box, client, "10.86.0.1", "web") == ["10.86.0.2"]
    for _ in range(2):
        assert dig(box, client, "10.86.0.1", "cached.upstream.test") == ["192.0.2.1"]
    fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9153/metrics').read().decode())"
    metrics = subprocess.run([*box.enter, sys.executable, "-c", fetch], capture_output=True, text=True,
                             timeout=30, check=True).stdout
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
              if line and not line.startswith("#")}
    assert values["dnsd_forward_requests_total"] == 1  # the second one came from the cache
    assert values["dnsd_cache_hits_total"] >= 1
    assert any(key.startswith("dnsd_requests_total{") and 'network="met"' in key for key in values)


@pytest.mark.parametrize("python_only", [False, True])
def test_an_add_racing_the_last_del(python_only):
    """The last DEL stops dnsd while an ADD comes in: the ADD either registers with the old dnsd before it
    decides to stop (which then stays) or starts a new one once the old one is gone; either way its name is
    answered when it returns, and dnsd runs. With the C executable dnsd itself orders them; with the Python
    script, the lock in the state dir does."""
    box = CniBox(python_only=python_only)
    try:
        _race(box)
    finally:
        box.close()
    assert box.leftovers() == []


def _race(box: CniBox) -> None:
    chain = box.chain("race", "10.87.0.0/24")
    client = box.container("client")
    namespaces = [box.container(f"r{n}") for n in range(12)]
    chain.add(cid(100), namespaces[0], name="r0")
    for n in range(1, 12):
        with ThreadPoolExecutor(max_workers=2) as pool:
            gone = pool.submit(chain.delete, cid(100 + n - 1), namespaces[n - 1], f"r{n - 1}")
            added = pool.submit(chain.add, cid(100 + n), namespaces[n], f"r{n}")
            gone.result()
            address = added.result()["ips"][0]["address"].split("/")[0]
        assert dig(box, namespaces[n], "10.87.0.1", f"r{n}") == [address], n
        assert [name for *_, name in rows(box)] == [f"r{n}"]
    chain.add(cid(99), client, name="client")
    assert dig(box, client, "10.87.0.1", "r11")
