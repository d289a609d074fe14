"""``python -m dnsd``: arguments, and a whole run against a real store on loopback."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dnslib
import pytest

from dnsd.__main__ import main, parse_args
from dnsd.app import host_nameservers
from dnsd.core.config import ServerConfig
from netcore.store import Store
from netcore.system import linux

REPO = Path(__file__).resolve().parents[3]
GATEWAY, CLIENT = "127.0.1.1", "127.0.1.2"
SAFETY = 10.0  # seconds: only so that a broken dnsd fails the test instead of hanging it


@pytest.mark.parametrize("argv, message", [
    (["--state-dir", "/tmp", "--port", "0"], "--port"),
    (["--state-dir", "/tmp", "--ttl", "-1"], "--ttl"),
    (["--state-dir", "/tmp", "--max-inflight", "0"], "--max-inflight"),
    (["--state-dir", "/tmp", "--upstream", "resolver.example"], "bad DNS server"),
    (["--state-dir", "/tmp"] + ["--upstream", "10.0.0.1"] * 4, "at most 3"),
    (["--bogus"], "unrecognized"),
    ([], "no state dir"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("NETCORE_STATE_DIR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("dnsd: ") and message in error


def test_the_command_line_defaults_are_the_configs(monkeypatch):
    monkeypatch.delenv("NETCORE_NETNS", raising=False)
    args, config = parse_args(["--state-dir", "/tmp"]), ServerConfig()
    assert (args.port, args.ttl, args.max_inflight, args.max_inflight_per_client, args.forward_timeout, args.tcp_idle,
            args.tcp_max, args.udp_window / 1000, args.managed) == (
        config.port, config.ttl, config.max_inflight, config.max_inflight_per_client, config.forward_timeout,
        config.tcp_idle, config.tcp_max, config.udp_window, config.managed)
    assert (config.port, config.max_inflight, config.forward_timeout, config.tcp_max) == (53, 1024, 3.0, 512)


def test_missing_state_dir_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["--state-dir", str(tmp_path / "nowhere")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "does not exist" in error


def test_missing_namespace_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["--state-dir", str(tmp_path), "--netns", f"dnsd-test-absent-{os.getpid()}"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "does not exist" in error


@pytest.mark.parametrize("name", ["", ".", "..", "../here", "a/b"])
def test_a_name_that_cannot_be_a_namespace_is_refused_before_any_path_is_opened(name, tmp_path, capsys):
    with pytest.raises(OSError) as raised:
        linux.netns_path(name)
    assert raised.value.errno == errno.EINVAL
    if name:  # an empty --netns is host mode
        assert main(["--state-dir", str(tmp_path), "--netns", name]) == 1
        assert capsys.readouterr().err == f"dnsd: bad network namespace name {name!r}\n"


def test_host_nameservers_reads_at_most_three(tmp_path):
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("# comment\nsearch example\nnameserver 10.0.0.1\nnameserver fd00::1\n"
                           "nameserver bogus\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n")
    assert host_nameservers(str(resolv_conf)) == (("10.0.0.1", 53), ("fd00::1", 53), ("10.0.0.2", 53))
    assert host_nameservers(str(tmp_path / "absent")) == ()


@pytest.fixture
def state_dir(tmp_path, world):
    net = world.network("neta", "127.0.1.0/24", GATEWAY)
    world.container("a1", net, CLIENT)
    store = Store.open(str(tmp_path))
    with store.transaction():
        for record in world.networks + world.containers + world.endpoints:
            store.insert(record)
    store.close()
    return tmp_path


@pytest.fixture
def dnsd(state_dir, free_port):
    """``python -m dnsd`` in the foreground on a high port, with an upstream that is never asked."""
    argv = [sys.executable, "-m", "dnsd", "--state-dir", str(state_dir), "--port", str(free_port),
            "--upstream", "127.0.0.1:9"]
    process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SAFETY
        while not _control(state_dir, "ping").startswith("pong"):
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def _control(state_dir: Path, command: str) -> str:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(SAFETY)
            sock.connect(str(state_dir / "dnsd.sock"))
            sock.sendall(command.encode() + b"\n")
            return sock.makefile().readline().strip()
    except (FileNotFoundError, ConnectionRefusedError):
        return ""


def _ask(name: str, port: int) -> dnslib.DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(SAFETY)
        sock.bind((CLIENT, 0))
        sock.sendto(bytes(dnslib.DNSRecord.question(name).pack()), (GATEWAY, port))
        return dnslib.DNSRecord.parse(sock.recv(65535))


def test_a_run_serves_the_store_syncs_and_stops(dnsd, state_dir, world, free_port):
    assert _control(state_dir, "ping") == f"pong {dnsd.pid} foreground"
    assert (state_dir / "dnsd.pid").read_text().strip() == str(dnsd.pid)
    assert [str(r.rdata) for r in _ask("a1", free_port).rr] == [CLIENT]

    net = world.networks[0]
    fresh = world.container("fresh", net, "127.0.1.3")
    store = Store.open(str(state_dir))
    with store.transaction():
        store.insert(fresh)
        store.insert(world.endpoints[-1])
    store.close()
    assert _control(state_dir, "sync").startswith("ok ")
    assert [str(r.rdata) for r in _ask("fresh", free_port).rr] == ["127.0.1.3"]

    assert _control(state_dir, "stop") == "ok"
    assert dnsd.wait(SAFETY) == 0
    assert not (state_dir / "dnsd.pid").exists() and not (state_dir / "dnsd.sock").exists()


def test_sigterm_stops_cleanly(dnsd, state_dir):
    dnsd.send_signal(signal.SIGTERM)
    assert dnsd.wait(SAFETY) == 0
    assert not (state_dir / "dnsd.pid").exists() and not (state_dir / "dnsd.sock").exists()
    assert b"Traceback" not in dnsd.stdout.read()
