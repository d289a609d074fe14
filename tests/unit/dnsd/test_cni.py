"""The netcore-dns CNI plugin without root: requests and their errors, results, the registrations, the records
dnsd builds from them, and the install script (issue 29)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys

import dnslib
import pytest

from dnsd.cni import plugin as cni_plugin
from dnsd.cni.check import addresses_in, query
from dnsd.cni.install import MARKER, install
from dnsd.cni.plugin import CniError, Dnsd, attachment_of, parse_cni_args, read_request, run, state_dir_of
from dnsd.cni.service import format_answer, parse_call
from dnsd.core.answer import Answerer
from dnsd.core.builder import SnapshotBuilder
from dnsd.sources.cni import CniRecords, network_id, to_records
from dnsd.sources.cni_store import Attachment, Registrations

ID1 = "1" * 64
ID2 = "2" * 64
ID3 = "3" * 64

BRIDGE_RESULT = {  # what bridge + host-local return (containernetworking-plugins 1.1, cniVersion 1.0.0)
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cni-t0", "mac": "aa:00:00:00:00:01"},
                   {"name": "veth1", "mac": "aa:00:00:00:00:02"},
                   {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/run/netns/c1"}],
    "ips": [{"interface": 2, "address": "10.88.0.2/24", "gateway": "10.88.0.1"},
            {"interface": 2, "address": "fd00:88::2/64", "gateway": "fd00:88::1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {"nameservers": ["192.0.2.1"]},
}


def env(command: str = "ADD", **extra: str) -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": ID1, "CNI_NETNS": "/run/netns/c1", "CNI_IFNAME": "eth0",
            "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web", "CNI_PATH": "/usr/lib/cni", **extra}


def config(**extra) -> dict:
    return {"cniVersion": "1.0.0", "name": "net1", "type": "netcore-dns", "prevResult": BRIDGE_RESULT,
            "runtimeConfig": {"aliases": {"net1": ["api", "www"]}}, **extra}


def error_of(environ: dict, stdin: bytes, state_dir: str = "/nonexistent/netcore-cni") -> dict:
    status, document = run(environ, stdin, Dnsd(state_dir))
    assert status == 1
    assert set(document) == {"cniVersion", "code", "msg", "details"}
    return document


# -- requests and errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("environ", "stdin", "code", "where"), [
    ({"CNI_COMMAND": ""}, b"{}", 4, "CNI_COMMAND"),
    ({"CNI_COMMAND": "PUT"}, b"{}", 4, "CNI_COMMAND"),
    (env(), b"{not json", 6, ""),
    (env(), b"[1, 2]", 6, "object"),
    (env(), json.dumps({**config(), "cniVersion": "0.2.0"}).encode(), 1, "0.2.0"),
    (env(), json.dumps({key: value for key, value in config().items() if key != "cniVersion"}).encode(), 1, "0.1.0"),
    (env("CHECK"), json.dumps({**config(), "cniVersion": "0.3.1"}).encode(), 1, "CHECK"),
    (env("STATUS"), json.dumps(config()).encode(), 1, "STATUS"),
    ({**env(), "CNI_CONTAINERID": ""}, json.dumps(config()).encode(), 4, "CNI_CONTAINERID"),
    ({**env(), "CNI_NETNS": ""}, json.dumps(config()).encode(), 4, "CNI_NETNS"),
    ({**env(), "CNI_CONTAINERID": "-bad id"}, json.dumps(config()).encode(), 4, "CNI_CONTAINERID"),
    ({**env(), "CNI_IFNAME": "a/b"}, json.dumps(config()).encode(), 4, "CNI_IFNAME"),
    ({**env(), "CNI_ARGS": "K8S_POD_NAME"}, json.dumps(config()).encode(), 4, "CNI_ARGS"),
    (env(), json.dumps({**config(), "name": ""}).encode(), 7, "name"),
    (env(), json.dumps({**config(), "name": "bad/name"}).encode(), 7, "name"),
    (env(), json.dumps({**config(), "domainName": 5}).encode(), 7, "domainName"),
])
def test_bad_calls_get_the_specs_error_document(tmp_path, environ, stdin, code, where):
    document = error_of(environ, stdin)
    assert document["code"] == code
    assert where in document["msg"] + document["details"]
    assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.parametrize(("change", "where"), [
    ({"prevResult": None}, "chained"),
    ({"prevResult": "text"}, "prevResult"),
    ({"prevResult": {**BRIDGE_RESULT, "ips": []}}, "no address"),
    ({"prevResult": {**BRIDGE_RESULT, "ips": [{"address": "10.88.0.2/24"}]}}, "no gateway"),
    ({"prevResult": {**BRIDGE_RESULT, "ips": [{"address": "10.88.0.300/24", "gateway": "10.88.0.1"}]}}, "address"),
    ({"prevResult": {**BRIDGE_RESULT, "ips": [{"address": "10.88.0.2/33", "gateway": "10.88.0.1"}]}}, "prefix"),
    ({"prevResult": {**BRIDGE_RESULT, "ips": [{"address": "10.88.0.2/24", "gateway": "x"}]}}, "gateway"),
    ({"runtimeConfig": {"aliases": "api"}}, "aliases"),
    ({"runtimeConfig": {"aliases": {"net1": [1]}}}, "aliases"),
    ({"name": "bridge"}, "default network"),
])
def test_bad_configurations_register_nothing(tmp_path, change, where):
    state_dir = str(tmp_path / "state")
    conf = {**config(), **change}
    if conf.get("prevResult") is None:
        del conf["prevResult"]
    document = error_of(env(), json.dumps(conf).encode(), state_dir)
    assert document["code"] == 7
    assert where in document["details"]
    assert not os.path.exists(state_dir)  # no store, no dnsd


def test_cni_args():
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=web;;X=a=b") == {
        "IgnoreUnknown": "1", "K8S_POD_NAME": "web", "X": "a=b"}
    with pytest.raises(CniError) as caught:
        parse_cni_args("=x")
    assert caught.value.code == 4


def test_version_answers_without_a_container():
    status, document = run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}', Dnsd("/nonexistent"))
    assert status == 0
    assert document == {"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}
    assert run({"CNI_COMMAND": "VERSION"}, b"", Dnsd("/nonexistent"))[1]["cniVersion"] == "1.1.0"


def test_attachment_from_prev_result_name_aliases_hostname():
    request = read_request({**env(), "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web;NERDCTL_CNI_DHCP_HOSTNAME=h1"},
                           json.dumps(config(domainName="dns.podman")).encode())
    attachment = attachment_of(request, "5:6")
    assert (attachment.name, attachment.hostname, attachment.aliases) == ("web", "h1", ("api", "www"))
    assert attachment.ipv4 == ("10.88.0.2",) and attachment.ipv6 == ("fd00:88::2",)
    assert attachment.gateways == ("10.88.0.1", "fd00:88::1")
    assert attachment.subnets == ("10.88.0.2/24", "fd00:88::2/64")
    assert (attachment.netns, attachment.netns_id, attachment.domain) == ("/run/netns/c1", "5:6", "dns.podman")


def test_host_side_addresses_and_list_aliases():
    previous = {**BRIDGE_RESULT, "ips": [{"interface": 0, "address": "10.88.0.1/24"},  # on the bridge: not ours
                                         {"interface": 2, "address": "10.88.0.2/24", "gateway": "10.88.0.1"}]}
    request = read_request(env(), json.dumps({**config(), "prevResult": previous,
                                              "runtimeConfig": {"aliases": ["db"]}}).encode())
    attachment = attachment_of(request)
    assert attachment.ipv4 == ("10.88.0.2",) and attachment.aliases == ("db",)


def test_add_result_passes_prev_result_on_with_the_gateways_first():
    request = read_request(env(), json.dumps(config(domainName="dns.podman")).encode())
    result = cni_plugin.add_result(request, attachment_of(request))
    assert {key: value for key, value in result.items() if key != "dns"} == \
        {key: value for key, value in BRIDGE_RESULT.items() if key != "dns"}
    assert result["dns"] == {"nameservers": ["10.88.0.1", "fd00:88::1", "192.0.2.1"], "search": ["dns.podman"]}
    old = read_request(env(), json.dumps({**config(), "cniVersion": "0.4.0"}).encode())
    assert cni_plugin.add_result(old, attachment_of(old))["cniVersion"] == "0.4.0"


# -- the registrations ---------------------------------------------------------------------------------------

def attachment(container_id=ID1, network="net1", name="web", ipv4=("10.88.0.2",), netns="", netns_id="",
               ifname="eth0", **extra) -> Attachment:
    return Attachment(container_id, ifname, network, name=name, ipv4=ipv4, gateways=("10.88.0.1",),
                      subnets=(f"{ipv4[0]}/24",), netns=netns, netns_id=netns_id, **extra)


def test_store_generations_and_change_feed(tmp_path):
    store = Registrations(str(tmp_path))
    store.add(attachment(), current_boot="b1")
    assert store.changes_since(0) == (1, None)  # the network is new
    store.add(attachment(ID2, name="db", ipv4=("10.88.0.3",)), current_boot="b1")
    assert store.changes_since(1) == (2, {ID2})
    assert store.remove(ID2, "eth0", "net1", current_boot="b1") == 1
    assert store.changes_since(2) == (3, {ID2})
    assert store.remove(ID2, "eth0", "net1", current_boot="b1") == 1  # idempotent, and no new generation
    assert store.generation() == 3
    assert store.remove(ID1, "eth0", "net1", current_boot="b1") == 0
    assert store.changes_since(3) == (4, None)  # the network went
    assert store.attachments() == []


def test_store_round_trips_and_replaces(tmp_path):
    store = Registrations(str(tmp_path))
    first = attachment(aliases=("api", "www"), hostname="h", domain="d")
    store.add(first, current_boot="b")
    assert store.attachments() == [first]
    second = attachment(name="web2")
    store.add(second, current_boot="b")  # a second ADD of the same attachment replaces it
    assert store.attachments() == [second]
    assert store.find(ID1, "eth0", "net1") == second and store.find(ID1, "eth1", "net1") is None


def test_store_sweeps_gone_namespaces_and_earlier_boots(tmp_path):
    store = Registrations(str(tmp_path))
    store.add(attachment(netns="/ns/a", netns_id="1:10"), alive=lambda path: "1:10", current_boot="b1")
    store.add(attachment(ID2, ipv4=("10.88.0.3",), netns="/ns/b", netns_id="1:11"),
              alive=lambda path: "1:10" if path == "/ns/a" else "1:11", current_boot="b1")
    # /ns/b is gone (or is another namespace now): the next write sweeps it
    store.add(attachment(ID3, ipv4=("10.88.0.4",), netns="/ns/c", netns_id="1:12"),
              alive=lambda path: {"/ns/a": "1:10", "/ns/c": "1:12"}.get(path, ""), current_boot="b1")
    assert sorted(a.container_id for a in store.attachments()) == [ID1, ID3]
    assert ID2 in store.changes_since(2)[1]
    # a reboot: everything registered before it is stale, whatever the paths say now
    assert store.sweep(alive=lambda path: "1:10", current_boot="b2") == 0


def test_store_gc_keeps_only_valid_attachments(tmp_path):
    store = Registrations(str(tmp_path))
    alive = {"/ns/1": "1:1", "/ns/2": "1:2"}.get
    store.add(attachment(netns="/ns/1", netns_id="1:1"), alive=alive, current_boot="b")
    store.add(attachment(ID2, ipv4=("10.88.0.3",), netns="/ns/2", netns_id="1:2"), alive=alive, current_boot="b")
    store.add(attachment(ID2, network="net2", ipv4=("10.89.0.3",), netns="/ns/2", netns_id="1:2"), alive=alive,
              current_boot="b")
    assert store.keep_only("net1", {(ID1, "eth0")}, alive=alive, current_boot="b") == 2
    assert sorted((a.container_id, a.network) for a in store.attachments()) == [(ID1, "net1"), (ID2, "net2")]


def test_store_refuses_a_newer_schema(tmp_path):
    Registrations(str(tmp_path)).close()
    with sqlite3.connect(tmp_path / "cni.db") as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(Exception, match="newer than this plugin's"):
        Registrations(str(tmp_path))


def test_store_writes_are_atomic(tmp_path):
    """A write that fails part-way leaves the last committed state (as a plugin killed mid-call does)."""
    store = Registrations(str(tmp_path))
    store.add(attachment(netns="/p", netns_id="x"), alive=lambda path: "x", current_boot="b")

    def dies(_path):
        raise KeyboardInterrupt  # in the middle of the sweep, inside the transaction

    with pytest.raises(KeyboardInterrupt):
        store.add(attachment(ID2, ipv4=("10.88.0.3",), netns_id="x", netns="/p"), alive=dies, current_boot="b")
    store.add(attachment(ID3, ipv4=("10.88.0.4",), netns="/p", netns_id="x"), alive=lambda path: "x",
              current_boot="b")
    with pytest.raises(KeyboardInterrupt):
        store.add(attachment(ID2, ipv4=("10.88.0.3",)), alive=dies, current_boot="b")
    assert sorted(a.container_id for a in store.attachments()) == [ID1, ID3]
    assert store.generation() == 2


# -- what dnsd serves of them --------------------------------------------------------------------------------

def answer(snapshot, name, client="10.88.0.9", listener="10.88.0.1", qtype="A"):
    reply = Answerer(snapshot).handle(bytes(dnslib.DNSRecord.question(name, qtype).pack()), client, listener, False)
    return sorted(str(rr.rdata) for rr in dnslib.DNSRecord.parse(reply).rr)


def test_records_names_aliases_domain_and_two_networks():
    attachments = [
        attachment(aliases=("api",), hostname="h1", domain="dns.podman"),
        Attachment(ID1, "eth1", "net2", name="web", ipv4=("10.89.0.2",), gateways=("10.89.0.1",),
                   subnets=("10.89.0.2/24",), aliases=("api2",)),
        attachment(ID2, name="db", ipv4=("10.88.0.3",), aliases=("api",)),
        Attachment(ID3, "eth0", "net2", name="other", ipv4=("10.89.0.3",), gateways=("10.89.0.1",),
                   subnets=("10.89.0.3/24",)),
    ]
    networks, attached = to_records(attachments)
    assert [(n.name, n.subnet, n.dns_addresses, n.id) for n in networks] == [
        ("net1", "10.88.0.0/24", ("10.88.0.1",), network_id("net1")), ("net2", "10.89.0.0/24", ("10.89.0.1",),
                                                                        network_id("net2"))]
    snapshot = SnapshotBuilder().build(networks, attached)
    assert answer(snapshot, "web") == ["10.88.0.2"]  # a client that is no container: the listener's network
    assert answer(snapshot, "web.dns.podman") == answer(snapshot, "h1.dns.podman") == ["10.88.0.2"]
    assert answer(snapshot, "api") == ["10.88.0.2", "10.88.0.3"]  # both holders
    assert answer(snapshot, ID1[:12]) == ["10.88.0.2"]
    assert answer(snapshot, "other") == []  # net2's name, asked on net1
    # db (only on net1) is not answered net2's names; web (on both) is answered both
    assert answer(snapshot, "other", client="10.88.0.3") == []
    assert answer(snapshot, "other", client="10.88.0.2") == ["10.89.0.3"]
    assert answer(snapshot, "db", client="10.89.0.2", listener="10.89.0.1") == ["10.88.0.3"]
    assert answer(snapshot, "2.0.88.10.in-addr.arpa", qtype="PTR") == ["web.net1."]
    assert answer(snapshot, "web.net2", client="10.88.0.2") == ["10.89.0.2"]


def test_record_source_patches_on_container_changes(tmp_path):
    store = Registrations(str(tmp_path))
    store.add(attachment(), current_boot="b")
    records = CniRecords(str(tmp_path))
    builder = SnapshotBuilder()
    with records.dns_records() as (networks, containers):
        snapshot = builder.build(networks, containers)
    generation = records.generation()
    store.add(attachment(ID2, name="db", ipv4=("10.88.0.3",)), current_boot="b")
    _, changed = records.changes_since(generation)
    assert changed == {ID2}
    snapshot = builder.patch(changed, records.container_records(changed))
    assert answer(snapshot, "db") == ["10.88.0.3"] and answer(snapshot, "web") == ["10.88.0.2"]
    records.close()


def test_check_query_and_reply_parsing():
    message = query("web", "A", 0x1234)
    parsed = dnslib.DNSRecord.parse(message)
    assert (str(parsed.q.qname), parsed.header.id, parsed.header.rd) == ("web.", 0x1234, 1)
    reply = parsed.reply()
    reply.add_answer(dnslib.RR("web", dnslib.QTYPE.A, rdata=dnslib.A("10.88.0.2")))
    reply.add_answer(dnslib.RR("web", dnslib.QTYPE.A, rdata=dnslib.A("10.88.0.3")))
    assert addresses_in(reply.pack(), "A", 0x1234) == ["10.88.0.2", "10.88.0.3"]
    assert addresses_in(reply.pack(), "A", 0x4321) is None  # not the reply to our query


# -- the install command -------------------------------------------------------------------------------------

@pytest.mark.parametrize("python_only", [False, True])
def test_install_writes_an_executable_that_answers_version(tmp_path, python_only):
    path, kind = install(str(tmp_path), sys.executable, str(tmp_path / "state"), python_only=python_only)
    assert kind == ("python" if python_only else "c")
    assert os.stat(path).st_mode & stat.S_IXUSR and os.path.basename(path) == "netcore-dns"
    if python_only:
        with open(path) as script:
            assert script.readline() == f"#!{sys.executable} -IS\n"
    # no dnsd: the executable runs the Python plugin (the C one with stdin as it came)
    proc = subprocess.run([path], input='{"cniVersion": "1.0.0"}', env={"CNI_COMMAND": "VERSION"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"
    proc = subprocess.run([path], input='{"cniVersion": "1.0.0", "name": "n"}', env={"CNI_COMMAND": "ADD"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == 4  # CNI_CONTAINERID ... missing
    install(str(tmp_path), sys.executable, python_only=not python_only)  # our own file is rewritten


def test_install_never_replaces_a_file_it_did_not_write(tmp_path):
    (tmp_path / "netcore-dns").write_text("#!/bin/sh\necho someone else's\n")
    with pytest.raises(FileExistsError):
        install(str(tmp_path))
    assert (tmp_path / "netcore-dns").read_text() == "#!/bin/sh\necho someone else's\n"
    proc = subprocess.run([sys.executable, "-m", "dnsd", "cni-install", str(tmp_path)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "not replaced" in proc.stderr
    assert MARKER not in (tmp_path / "netcore-dns").read_text()
    proc = subprocess.run([sys.executable, "-m", "dnsd", "cni-install", "--state-dir", "relative", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_state_dir_and_the_call_protocol():
    assert state_dir_of({}, "/run/x") == "/run/x"
    assert state_dir_of({"NETCORE_CNI_STATE_DIR": "/tmp/y"}, "/run/x") == "/tmp/y"
    assert parse_call(b"CNI_COMMAND=ADD\0CNI_ARGS=A=1;B=2\0\0{}") == (
        {"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1;B=2"}, b"{}")
    for bad in (b"CNI_COMMAND=ADD\0{}", b"PATH=/bin\0\0{}", b"CNI_X\0\0"):
        with pytest.raises(ValueError):
            parse_call(bad)
    assert format_answer(0, None) == b"0"
    assert format_answer(1, {"code": 7}) == b'1{"code": 7}'


def test_plugin_imports_only_what_it_needs(tmp_path):
    """ADD's and DEL's path loads neither pyroute2, dnslib, netcore's engine nor dnsd's server."""
    code = ("import sys; from dnsd.cni import plugin; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyroute2', 'dnslib', 'netcore', 'dnsd', 'subprocess', 'ipaddress', 'dataclasses', 'asyncio'))))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    out = subprocess.run([sys.executable, "-IS", "-c", f"import sys; sys.path.insert(0, {root!r}); {code}"],
                         capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert out == ["dnsd", "dnsd.cni", "dnsd.cni.plugin", "dnsd.sources", "dnsd.sources.cni_store", "netcore",
                   "netcore.dnsd_protocol", "netcore.errors", "netcore.system", "netcore.system.files",
                   "netcore.system.processes"]  # the packages' __init__ import nothing; the system's os and contextlib
