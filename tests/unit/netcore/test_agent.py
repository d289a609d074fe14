"""netcored without root: its wire protocol (pure), and a real agent on a real unix socket in a thread, with an
engine on the in-memory kernel: round trips, versions, bad and silent clients, one agent per state dir."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import stat
import threading
import time

import pytest

from netcore.agent import protocol
from netcore.agent.client import PID_NAME, SOCKET_NAME, AgentClient, AgentUnavailable
from netcore.agent.protocol import MAX_REQUEST, PROTOCOL, LineReader, ProtocolError, Request, decode_reply
from netcore.agent.server import REQUEST_TIMEOUT, VERBS, Agent
from netcore.cli import handlers, parser
from netcore.engine import Engine
from tests.support.fake_kernel import GATEWAY_NS, FakeClock, FakeDnsd, FakeKernel, FakePorts

# -- the protocol, pure -----------------------------------------------------------------------------------


def test_a_request_goes_through_the_wire_whole():
    request = Request("network create", {"name": "app", "subnet": ["10.1.0.0/24"]}, "gw", True)
    line = request.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.decode_request(line, VERBS) == request


def test_a_command_line_goes_through_the_wire_whole_without_json():
    request = Request("", {}, None, False, ["run", "--name", "wé\"b\\", "\udcff", "--", "sh", "-c", "echo $x"])
    line = request.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and json.loads(line)["argv"] == request.argv
    assert protocol.decode_request(line, VERBS) == request


def test_a_compose_command_line_goes_with_the_clients_directory_and_environment():
    environ = {"TAG": "1.2", "Q": 'a"b\\c\n', "É": "wé", "RAW": "\udcff", "EMPTY": ""}
    request = Request("", {}, "gw", False, ["compose", "up", "-d"], "/home/mé/app", environ)
    line = request.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["cwd"] == "/home/mé/app" and json.loads(line)["environ"] == environ
    assert protocol.decode_request(line, VERBS) == request
    plain = Request("", {}, None, False, ["ps"]).encode()
    assert b"cwd" not in plain and b"environ" not in plain  # only a Compose command carries them


@pytest.mark.parametrize("reply", [b'{"out":"a\\nb \\u00e9 \\"q\\""}', b'{"err":"x"}', b' {"exit":0} ',
                                   b'{"exit":0,"agent":{"pid":1,"uptime":2.5,"netns":null,"x":[true,false]}}',
                                   b'{"exit":0,"exec":{"netns":"n","argv":["sh","-c","exit 3"]}}'])
def test_a_reply_is_read_as_json_reads_it(reply):
    assert decode_reply(reply) == json.loads(reply)


@pytest.mark.parametrize("reply", [b"", b"{", b'{"out":"a"} x', b'{"out":"a"}{"err":"b"}', b"\xff", b"NaN"])
def test_a_reply_that_is_not_one_json_object_is_one_line(reply):
    with pytest.raises(ProtocolError, match="malformed reply"):
        decode_reply(reply)


@pytest.mark.parametrize(("line", "words"), [
    (b"not json", "malformed request"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"netcored": PROTOCOL + 1, "verb": "ps"}).encode(), f"speaks protocol {PROTOCOL + 1}"),
    (json.dumps({"verb": "ps"}).encode(), "speaks protocol None"),
    (json.dumps({"netcored": PROTOCOL}).encode(), "no verb"),
    (json.dumps({"netcored": PROTOCOL, "verb": "fly"}).encode(), "unknown verb 'fly'"),
    (json.dumps({"netcored": PROTOCOL, "verb": "ps", "params": []}).encode(), "params is not a JSON object"),
    (json.dumps({"netcored": PROTOCOL, "verb": "ps", "netns": 3}).encode(), "netns is not a string"),
    (json.dumps({"netcored": PROTOCOL, "argv": "ps"}).encode(), "argv is not a list of strings"),
    (json.dumps({"netcored": PROTOCOL, "argv": ["ps", 1]}).encode(), "argv is not a list of strings"),
    (json.dumps({"netcored": PROTOCOL, "argv": ["up"], "cwd": 1, "environ": {}}).encode(), "cwd is not a string"),
    (json.dumps({"netcored": PROTOCOL, "argv": ["up"], "cwd": "/", "environ": []}).encode(),
     "environ is not an object of strings"),
    (json.dumps({"netcored": PROTOCOL, "argv": ["up"], "cwd": "/", "environ": {"A": 1}}).encode(),
     "environ is not an object of strings"),
    (b"\xff\xfe", "malformed request"),
])
def test_a_bad_request_is_one_line(line, words):
    with pytest.raises(ProtocolError) as raised:
        protocol.decode_request(line, VERBS)
    assert words in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("version", [1, PROTOCOL + 1, None])
def test_the_agent_s_own_commands_are_taken_from_a_client_of_any_version(version):
    """So `netcore agent stop` of another release stops it, and the next command starts one of its own."""
    for verb in ("agent stop", "agent status"):
        line = json.dumps({"netcored": version, "verb": verb, "netns": "gw"}).encode()
        assert protocol.decode_request(line, VERBS) == Request(verb, {}, "gw")
    with pytest.raises(ProtocolError, match="speaks protocol"):
        protocol.decode_request(json.dumps({"netcored": version, "argv": ["agent", "stop"]}).encode(), VERBS)


def test_an_oversized_request_is_refused_before_it_is_parsed():
    with pytest.raises(ProtocolError, match="at most"):
        protocol.decode_request(b"x" * (MAX_REQUEST + 1), VERBS)


@pytest.mark.parametrize("reply", [b'{"out": 3}', b'{"exit": "0"}', b'{"what": 1}', b"{", b'{"out": "a", "err": "b"}',
                                   b'{"err": "a", "interruptible": true}', b'{"out": "a", "interruptible": 1}'])
def test_a_reply_of_another_shape_is_one_line_not_a_traceback(reply):
    with pytest.raises(ProtocolError, match="malformed reply"):
        decode_reply(reply)


class _Chunks:
    def __init__(self, *chunks: bytes):
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_an_output_line_may_mark_the_reply_interruptible():
    assert decode_reply(b'{"out": "Attaching to web\\n", "interruptible": true}') == {
        "out": "Attaching to web\n", "interruptible": True}


def test_the_agent_tells_an_interrupt_from_a_client_gone():
    """A client that waits for the graceful end writes the interrupt line (here in two pieces) and reads on;
    one that does not closes its end. The agent's reply sees which, without waiting."""
    from netcore.agent.server import _Reply

    agent_end, client_end = socket.socketpair()
    reply = _Reply(agent_end)
    assert not reply.peer_closed() and not reply.interrupted
    client_end.sendall(protocol.INTERRUPT[:7])
    assert not reply.peer_closed() and not reply.interrupted
    client_end.sendall(protocol.INTERRUPT[7:])
    assert not reply.peer_closed() and reply.interrupted
    reply.write("Container web  Stopped\n")
    reply.send({"exit": 130})
    assert [decode_reply(line) for line in client_end.recv(4096).splitlines()] == [
        {"out": "Container web  Stopped\n"}, {"exit": 130}]
    client_end.close()
    assert reply.peer_closed()
    agent_end.close()


def test_the_line_reader_joins_chunks_and_stops_a_long_line_at_its_limit():
    reader = LineReader(_Chunks(b'{"a"', b': 1}\n{"b": 2}\n', b"tail"))
    assert [reader.readline(), reader.readline(), reader.readline(), reader.readline()] == [
        b'{"a": 1}', b'{"b": 2}', b"tail", None]
    with pytest.raises(ProtocolError):
        LineReader(_Chunks(b"x" * 40, b"x" * 40), limit=50).readline()


# -- a real agent, in a thread, on the in-memory kernel ------------------------------------------------


class Running:
    """An Agent serving ``state_dir`` from a thread; ``client`` reaches it (never starts another)."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.kernel = FakeKernel(GATEWAY_NS)
        self.agent = Agent(state_dir, GATEWAY_NS, engine_factory=lambda: Engine(
            state_dir, GATEWAY_NS, kernel=self.kernel, dnsd=FakeDnsd(), clock=FakeClock(), ports=FakePorts()))
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.agent.run()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        # the pid file, written once the agent listens: its socket file is there from bind(), before listen(),
        # and a connection then is refused
        while not os.path.exists(os.path.join(state_dir, PID_NAME)):
            assert self.thread.is_alive() and time.monotonic() < deadline, "the agent did not come up"
            time.sleep(0.01)
        self.client = AgentClient(state_dir, GATEWAY_NS)

    def call(self, verb: str, **params) -> tuple[int, str, list[str]]:
        out, err = [], []
        reply = self.client.call(verb, params, out.append, err.append, start=False)
        return reply["exit"], "".join(out), err

    def raw(self, data: bytes) -> list[dict]:
        """Send ``data`` as it is on a new connection; the reply lines."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(os.path.join(self.state_dir, SOCKET_NAME))
            sock.sendall(data)
            reader = LineReader(sock)
            lines = []
            while (line := reader.readline()) is not None:
                lines.append(json.loads(line))
            return lines

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def running(tmp_path):
    agent = Running(str(tmp_path / "state"))
    yield agent
    if agent.thread.is_alive():
        agent.stop()


def _create(name: str, subnet: str) -> dict:
    return {"name": name, "driver": "bridge", "subnet": [subnet], "ip_range": None, "gateway": None,
            "internal": False, "ipv6": False, "dns": [], "opt": [], "label": []}


def _run(name: str, net: str, publish=()) -> dict:
    return {"name": name, "net": net, "aliases": [], "ip": None, "hostname": None, "dns": [],
            "publish": list(publish), "detach": False, "cmd": []}


def test_commands_go_through_the_socket_and_read_their_own_writes(running):
    status, out, err = running.call("network create", **_create("app", "10.1.0.0/24"))
    assert status == 0 and len(out.strip()) == 64, (out, err)
    assert running.call("run", **_run("web", "app"))[0] == 0
    status, out, _ = running.call("ps", quiet=False)
    assert status == 0 and "web" in out and "10.1.0.2" in out
    assert stat.S_IMODE(os.stat(os.path.join(running.state_dir, SOCKET_NAME)).st_mode) == 0o600


def test_a_netcore_error_is_one_line_and_its_exit_status(running):
    status, out, err = running.call("network rm", names=["nope"])
    assert (status, out) == (1, "") and len(err) == 1 and "nope" in err[0]


def test_a_client_of_another_version_gets_one_line_and_the_agent_serves_on(running):
    lines = running.raw(json.dumps({"netcored": PROTOCOL + 1, "verb": "ps", "params": {}}).encode() + b"\n")
    assert lines[0]["err"].startswith(f"this netcore speaks protocol {PROTOCOL + 1}, netcored speaks {PROTOCOL}")
    assert lines[1:] == [{"exit": protocol.USAGE}]
    assert running.call("ps", quiet=True)[0] == 0


@pytest.mark.parametrize("data", [b"{not json\n", json.dumps({"netcored": PROTOCOL, "verb": "fly"}).encode() + b"\n",
                                  b"\n", b"x" * (MAX_REQUEST + 10) + b"\n"])
def test_a_malformed_unknown_or_oversized_request_is_one_line_and_the_agent_serves_on(running, data):
    lines = running.raw(data)
    assert len(lines) == 2 and "err" in lines[0] and lines[1] == {"exit": protocol.USAGE}, lines
    assert running.call("ps", quiet=True)[0] == 0


def test_a_silent_client_is_dropped_and_holds_up_no_one(running):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(os.path.join(running.state_dir, SOCKET_NAME))  # connects, sends nothing
        assert running.call("network create", **_create("app", "10.1.0.0/24"))[0] == 0  # served meanwhile
        silent.settimeout(REQUEST_TIMEOUT * 10)
        reply = b""
        while chunk := silent.recv(4096):
            reply += chunk
    lines = [json.loads(line) for line in reply.splitlines()]
    assert "no request within" in lines[0]["err"] and lines[1] == {"exit": protocol.USAGE}


def test_a_request_for_another_namespace_is_refused(running):
    out, err = [], []
    reply = AgentClient(running.state_dir, "other").call("ps", {"quiet": True}, out.append, err.append, start=False)
    assert reply["exit"] == protocol.USAGE and "one state dir serves one gateway namespace" in err[0]


def test_a_store_failure_is_one_line_saying_nothing_was_half_written(running, monkeypatch):
    def failing(engine, args, out):
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setitem(handlers.HANDLERS, "purge", failing)
    status, _, err = running.call("purge")
    assert status == 1 and len(err) == 1
    assert err[0].startswith("purge: the store in ") and "disk I/O error" in err[0]
    assert "nothing was half-written" in err[0]


def test_a_bug_is_one_line_to_the_client_and_the_agent_serves_on(running, monkeypatch):
    monkeypatch.setitem(handlers.HANDLERS, "ps", lambda engine, args, out: 1 / 0)
    status, _, err = running.call("ps", quiet=True)
    assert status == 1 and err[-1].startswith("ps: internal error in netcored: ZeroDivisionError")
    monkeypatch.undo()
    assert running.call("ps", quiet=True)[0] == 0


def test_a_second_agent_on_the_state_dir_exits_at_once_and_the_first_serves_on(running):
    assert Agent(running.state_dir, GATEWAY_NS, engine_factory=lambda: pytest.fail("must not open")).run() == 0
    assert running.call("ps", quiet=True)[0] == 0


def test_agent_status_and_stop(running):
    out, err = [], []
    reply = running.client.call("agent status", {}, out.append, err.append, start=False)
    assert reply["exit"] == 0 and reply["agent"]["pid"] == os.getpid()
    assert (reply["agent"]["protocol"], reply["agent"]["state_dir"], reply["agent"]["netns"]) == (
        PROTOCOL, running.state_dir, GATEWAY_NS)
    running.client.call("agent stop", {}, out.append, err.append, start=False)
    running.thread.join(10)
    assert running.result == [0] and not os.path.exists(os.path.join(running.state_dir, SOCKET_NAME))
    with pytest.raises(AgentUnavailable):
        running.client.call("ps", {"quiet": True}, out.append, err.append, start=False)


# -- command lines: the agent parses them ---------------------------------------------------------------


def _line(running, *argv: str) -> list[dict]:
    return running.raw(Request("", {}, GATEWAY_NS, False, list(argv)).encode())


def test_a_command_line_runs_as_its_command_does(running):
    lines = _line(running, "network", "create", "--subnet", "10.1.0.0/24", "app")
    assert len(lines[0]["out"].strip()) == 64 and lines[-1] == {"exit": 0}, lines
    assert _line(running, "run", "--name", "web", "--net", "app", "-p", "8080:80")[-1] == {"exit": 0}
    out = "".join(line.get("out", "") for line in _line(running, "--netns", GATEWAY_NS, "ps", "--format",
                                                           "{{.Names}} {{.Ports}}"))
    assert out == "web 0.0.0.0:8080->80/tcp\n"
    assert _line(running, "rm", "nope") == [{"err": "no such container: nope"}, {"exit": 1}]


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["run", "-p", "80:"], ["network"], ["ps", "-h"], ["bogus"],
                                  ["network", "prune", "-f"], ["agent", "stop"], ["up", "-f", "x.yaml"],
                                  ["compose", "ls"],
                                  ["version"], ["completion", "bash"]])
def test_a_command_line_the_client_must_parse_or_complete_comes_back_untouched(running, argv):
    before = list(running.kernel.calls)
    lines = _line(running, *argv)
    assert len(lines) == 1 and lines[0]["exit"] == protocol.USAGE and lines[0]["parse"], lines
    assert running.kernel.calls == before  # nothing was done


def test_a_compose_command_line_reads_the_files_of_the_clients_directory_with_its_environment(running, tmp_path):
    """As the parsed command would: the files relative to the client's directory, interpolated with its
    environment; -f - (the client's standard input) and a line without the client's context come back."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "compose.yaml").write_text("services:\n  web:\n    container_name: ${NAME:-dflt}\n"
                                          "    networks: [front]\nnetworks:\n  front: {}\n")
    lines = running.raw(Request("", {}, GATEWAY_NS, False, ["compose", "config", "--services"], str(project),
                                {"NAME": "xy"}).encode())
    assert "".join(line.get("out", "") for line in lines) == "web\n" and lines[-1] == {"exit": 0}, lines
    lines = running.raw(Request("", {}, GATEWAY_NS, False, ["compose", "config"], str(project),
                                {"NAME": "from-env"}).encode())
    assert lines[-1] == {"exit": 0} and "container_name: from-env" in "".join(x.get("out", "") for x in lines)
    up = running.raw(Request("", {}, GATEWAY_NS, False, ["up", "-f", "compose.yaml"], str(project), {}).encode())
    names = "".join(x.get("out", "") for x in _line(running, "ps", "--format", "{{.Names}}"))
    assert up[-1] == {"exit": 0} and names == "dflt\n", up
    for argv, context in ((["compose", "-f", "-", "config"], (str(project), {})),
                          (["compose", "config"], (None, None))):
        lines = running.raw(Request("", {}, GATEWAY_NS, False, argv, *context).encode())
        assert len(lines) == 1 and lines[0]["exit"] == protocol.USAGE and "the client completes it" in lines[0]["parse"]


def test_a_command_line_of_run_with_a_command_says_so(running):
    _line(running, "network", "create", "--subnet", "10.1.0.0/24", "app")
    lines = _line(running, "run", "--name", "web", "--net", "app", "--", "true")
    assert lines[-1]["exit"] == 0 and lines[-1]["command"] is True and lines[-1]["exec"]["argv"] == ["true"]
    assert "command" not in _line(running, "run", "--name", "db", "--net", "app")[-1]


def test_the_cli_sends_the_command_line_and_parses_what_comes_back(running, monkeypatch, capsys):
    from netcore import cli

    monkeypatch.setattr(cli, "missing_capabilities", lambda: [])
    sent = []
    real = AgentClient.call
    monkeypatch.setattr(AgentClient, "call", lambda self, *a, **k: sent.append(k.get("argv")) or real(self, *a, **k))
    base = ["--state-dir", running.state_dir, "--netns", GATEWAY_NS]
    assert cli.main([*base, "network", "create", "--subnet", "10.1.0.0/24", "app"]) == 0
    assert sent == [[*base, "network", "create", "--subnet", "10.1.0.0/24", "app"]]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        cli.main([*base, "run", "--bogus"])  # sent, given back, parsed here: the parser's own words, exit 2
    assert exited.value.code == 2 and len(sent) == 2
    assert capsys.readouterr().err == "netcore: unrecognized arguments: --bogus (see netcore --help)\n"
    assert cli.main([*base, "run", "--net", "nope", "--", "true"]) == cli.RUN_FAILED
    assert capsys.readouterr().err == "netcore: no such network: nope\n"
    assert cli.main([*base, "compose", "ls"]) == 0 and sent[-1] == [*base, "compose", "ls"]
    monkeypatch.setattr("sys.stdin", io.StringIO("services:\n  web: {}\n"))
    assert cli.main([*base, "compose", "-p", "x", "-f", "-", "config", "-q"]) == 0  # reads stdin: given back,
    assert sent[-2:] == [[*base, "compose", "-p", "x", "-f", "-", "config", "-q"], None]  # then sent parsed


@pytest.mark.parametrize(("argv", "found"), [
    (["ps"], ("/var/lib/netcore", None, "ps")),
    (["--netns", "gw", "--state-dir=/s", "rm", "a"], ("/s", "gw", "rm")),
    (["--netns=", "network", "ls", "-q"], ("/var/lib/netcore", "", "network ls")),
    (["--state-dir", "/a", "--state-dir", "/b", "run", "--name", "x"], ("/b", None, "run")),
    (["network", "prune"], None), (["network"], None), (["network", "-h"], None), (["run", "--help"], None),
    (["agent", "status"], ("/var/lib/netcore", None, "agent status")), (["agent", "stop"], None),
    (["compose", "up"], ("/var/lib/netcore", None, "compose")), (["up", "-f", "x"], ("/var/lib/netcore", None, "up")),
    (["version"], None), (["agent"], None),
    (["--netns"], None), (["--netns", "-x", "ps"], None), (["--net", "x", "ps"], None), (["-x", "ps"], None),
    ([], None), (["bogus"], None)])
def test_the_cli_sends_a_command_line_only_as_the_parser_would_read_it(argv, found, monkeypatch):
    from netcore import cli

    monkeypatch.delenv("NETCORE_NETNS", raising=False)
    monkeypatch.delenv("NETCORE_STATE_DIR", raising=False)
    assert cli.command_line(argv) == found
    if found:  # where it goes is where the parser sends it
        args = parser.build_parser().parse_args(argv)
        assert (args.state_dir, args.netns) == found[:2]


def test_an_agent_of_an_older_protocol_gets_the_usual_way(tmp_path, monkeypatch, capsys):
    """A command line refused by an agent of protocol 1 (which knows no command lines) is parsed here: a usage
    error is said in the parser's words, a command is sent parsed, and refused once, in the agent's words."""
    from netcore import cli

    monkeypatch.setattr(cli, "missing_capabilities", lambda: [])
    refusal = f"this netcore speaks protocol {PROTOCOL}, netcored speaks 1: use the same release for both"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / SOCKET_NAME))
    listener.listen(8)
    requests = []

    def old_agent():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the test closed the listener: this agent's work is done
                return
            with conn:
                requests.append(json.loads(LineReader(conn).readline()))
                conn.sendall(json.dumps({"err": refusal}).encode() + b"\n" + b'{"exit": 2}\n')

    threading.Thread(target=old_agent, daemon=True).start()
    base = ["--state-dir", str(tmp_path), "--netns", "gw"]
    with pytest.raises(SystemExit) as exited:
        cli.main([*base, "run", "--nam", "x"])
    assert exited.value.code == 2 and capsys.readouterr().err == \
        "netcore: unrecognized arguments: --nam (see netcore --help)\n"
    assert cli.main([*base, "ps", "-q"]) == 2
    assert capsys.readouterr().err == f"netcore: {refusal}\n"
    assert [("argv" in r, r.get("verb")) for r in requests] == [(True, None), (True, None), (False, "ps")]
    listener.close()
