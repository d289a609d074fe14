"""Who holds a port (netcore.holders: for dnsd's listeners and published ports) and the sync reply that carries
it to netcore (issue 11, item 4)."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

from netcore.dnsd_protocol import format_pong, format_sync_reply, parse_pong, parse_sync_reply
from netcore.system.holders import (
    BoundSocket,
    conflicting,
    describe_holders,
    parse_address,
    parse_table,
    process_name,
    role_of,
    socket_owners,
)

UDP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100590A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40001 2 0000000000000000 0
  124: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40002 2 0000000000000000 0
  125: 0100590A:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 40003 2 0000000000000000 0
  garbage line
"""
UDP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  10: 000000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 50001 2 0000000000000000 0
  11: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 50002 2 0000000000000000 0
  12: 0000000000000000FFFF00000100590A:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 50003 2 0000000000000000 0
  13: 000070FD000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 50004 2 0000000000000000 0
"""


def test_addresses_are_read_word_by_word_in_host_order():
    assert parse_address("0100590A:0035") == (ipaddress.ip_address("10.89.0.1"), 53)
    assert parse_address("00000000:1F90") == (ipaddress.ip_address("0.0.0.0"), 8080)
    assert parse_address("000070FD000000000000000001000000:0035") == (ipaddress.ip_address("fd70::1"), 53)
    assert parse_address("0000000000000000FFFF00000100590A:0035")[0].ipv4_mapped == ipaddress.ip_address("10.89.0.1")
    for bad in ("0100590A", "01005:0035", "zz00590A:0035", ""):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_a_table_parses_every_row_and_skips_the_header_and_garbage():
    rows = parse_table("udp", UDP)
    assert [(str(r.address), r.port, r.state, r.inode) for r in rows] == [
        ("10.89.0.1", 53, 7, 40001), ("0.0.0.0", 53, 7, 40002), ("10.89.0.1", 8080, 7, 40003)]
    six = parse_table("udp", UDP6)  # the first row has 33 hex digits: skipped, not misread
    assert [(r.address, r.inode) for r in six] == [(ipaddress.ip_address(a), i) for a, i in (
        ("::", 50002), ("::ffff:10.89.0.1", 50003), ("fd70::1", 50004))]


def test_conflicts_are_the_exact_address_first_then_wildcards_on_the_same_port():
    rows = parse_table("udp", UDP) + parse_table("udp", UDP6)
    assert [r.inode for r in conflicting(rows, "10.89.0.1", 53)] == [40001, 50003, 40002, 50002]
    assert [r.inode for r in conflicting(rows, "10.90.0.1", 53)] == [40002, 50002]
    assert [r.inode for r in conflicting(rows, "fd70::1", 53)] == [50004, 50002]  # never 0.0.0.0 for IPv6
    assert conflicting(rows, "10.89.0.1", 5353) == []
    # a published port on every address (issue 14) collides with any address of its family on that port
    assert [r.inode for r in conflicting(rows, "0.0.0.0", 53)] == [40001, 40002, 50003, 50002]
    assert [r.inode for r in conflicting(rows, "0.0.0.0", 8080)] == [40003]


def test_time_wait_and_orphaned_tcp_sockets_hold_nothing():
    listen = BoundSocket("tcp", ipaddress.ip_address("10.89.0.1"), 53, 0x0A, 7)
    time_wait = BoundSocket("tcp", ipaddress.ip_address("10.89.0.1"), 53, 0x06, 8)
    orphan = BoundSocket("tcp", ipaddress.ip_address("10.89.0.1"), 53, 0x07, 0)
    assert conflicting([time_wait, orphan, listen], "10.89.0.1", 53) == [listen]


def test_the_owner_of_a_socket_is_found_by_its_inode():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        inode = os.fstat(sock.fileno()).st_ino
        owners = socket_owners({inode})
    with open("/proc/self/comm") as f:
        assert owners == {inode: [(f.read().strip(), os.getpid())]}
    assert socket_owners(set()) == {}


def test_describe_names_the_process_holding_a_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.1.77", 0))
        port = sock.getsockname()[1]
        described = describe_holders("127.0.1.77", port)
    assert described.startswith("held by ") and f"(pid {os.getpid()}, udp 127.0.1.77:{port})" in described
    assert describe_holders("127.0.1.77", port) == "holder not found"


def test_sync_reply_round_trips_and_carries_the_listeners_that_are_down():
    assert format_sync_reply(17, {}) == "ok 17"
    assert parse_sync_reply("ok 17") == (17, {})
    down = {"10.89.0.1": "cannot listen on 10.89.0.1 port 53: address already in use, held by x (pid 1, udp)",
            "fd00::1": "cannot listen on fd00::1 port 53: Cannot assign requested address"}
    line = format_sync_reply(18, down)
    assert "\n" not in line and line.startswith("ok 18 {")
    assert parse_sync_reply(line) == (18, down)
    assert format_sync_reply(None, {}) == "ok 0"
    for bad in ("", "ok", "ok x", "error boom", "ok 3 [1]", 'ok 3 {"a": 1}', "ok 3 {"):
        with pytest.raises(ValueError):
            parse_sync_reply(bad)


def test_inspect_says_whether_dnsd_listens_on_a_networks_gateways_and_why_not():
    from netcore.cli.views import dns_state
    from netcore.model import Network
    app = Network(id="a" * 64, name="app", bridge="br-app", subnet="10.89.0.0/24", gateway="10.89.0.1",
                  subnet6="fd00::/64", gateway6="fd00::1", dns=("9.9.9.9",))
    bridge = Network(id="b" * 64, name="bridge", bridge="netcore0", subnet="172.17.0.0/16", gateway="172.17.0.1")
    assert dns_state(app, {}) == {"Enabled": True, "Servers": ["9.9.9.9"], "Listening": True}
    assert dns_state(app, {"10.90.0.1": "cannot listen on 10.90.0.1 port 53: x"})["Listening"] is True
    down = dns_state(app, {"fd00::1": "cannot listen on fd00::1 port 53: y"})
    assert down["Listening"] is False and down["Error"] == "dnsd cannot listen on fd00::1 port 53: y"
    assert dns_state(app, None)["Error"] == "dnsd is not running"
    assert dns_state(bridge, None) == {"Enabled": False, "Servers": []}  # no names, so nothing to listen for


def test_pong_round_trips_and_anything_else_is_no_pong():
    assert parse_pong(format_pong(4242, managed=True)) == (4242, "managed")
    assert parse_pong(format_pong(7, managed=False)) == (7, "foreground")
    assert parse_pong(None) is None and parse_pong("ok 3") is None and parse_pong("pong x managed") is None


# -- issue 23, item 4: every holder named, netcore's own processes by their role ----------------------------------


def test_every_socket_of_one_process_is_named_not_only_its_first():
    """A process holding both a UDP and a TCP socket on one port (as dnsd does on 53) is named for each: the
    old search stopped at a process's first matching descriptor and called the rest "an unknown process"."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        udp.bind(("127.0.1.79", 0))
        port = udp.getsockname()[1]
        tcp.bind(("127.0.1.79", port))
        tcp.listen(1)
        inodes = {os.fstat(s.fileno()).st_ino for s in (udp, tcp)}
        owners = socket_owners(inodes)
        described = describe_holders("127.0.1.79", port)
    assert sorted(owners) == sorted(inodes)
    assert all(pids == [(pids[0][0], os.getpid())] for pids in owners.values())
    assert "unknown" not in described
    assert f"(pid {os.getpid()}, udp 127.0.1.79:{port})" in described
    assert f"(pid {os.getpid()}, tcp 127.0.1.79:{port})" in described


def test_netcores_processes_are_named_by_their_role():
    assert role_of(["/usr/bin/python3", "-m", "dnsd", "--state-dir", "/var/lib/netcore", "--managed"]) == \
        "dnsd of state dir /var/lib/netcore"
    assert role_of(["/usr/bin/python3", "-u", "-m", "dnsd.supervise", "--state-dir", "/s"]) == \
        "dnsd's supervisor of state dir /s"
    assert role_of(["/usr/bin/python3", "-m", "netcore.agent", "--state-dir", "/s", "--netns", "gw"]) == \
        "netcored of state dir /s"
    assert role_of(["/usr/bin/python3", "/usr/local/bin/dnsd", "--upstream", "9.9.9.9"]) == "dnsd"
    head = "#!/usr/bin/python3\n# dnsd in aardvark-dns's place: netavark runs this\n"
    assert role_of(["/usr/bin/python3", "/h/aardvark-dns", "--config", "/c"], head) == "dnsd (as aardvark-dns)"
    for other in (["/usr/sbin/nginx"], ["/usr/bin/python3", "-m", "http.server"], ["python3", "-m"], []):
        assert role_of(other) is None


def test_a_process_is_named_from_a_proc_tree(tmp_path):
    for pid, argv, comm in (("10", [b"python3", b"-m", b"dnsd", b"--state-dir", b"/st"], b"python3\n"),
                            ("11", [b"/usr/sbin/unbound", b"-d"], b"unbound\n")):
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(argv) + b"\0")
        (tmp_path / pid / "comm").write_bytes(comm)
    assert process_name(str(tmp_path), "10") == "dnsd of state dir /st"
    assert process_name(str(tmp_path), "11") == "unbound"
    assert process_name(str(tmp_path), "12") == "?"
