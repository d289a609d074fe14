"""Issue 23, item 6, in sandbox mode: every command, reads too, restarts a dnsd that should run, with the
options STATE_DIR/dnsd.options holds now; ``netcore dns-options`` changes them (and keeps the old ones when dnsd
refuses the new); dnsd.log stays bounded. Names are asked with dig from a container, of dnsd on its gateway."""

from __future__ import annotations

import json
import os

import pytest

from netcore.dnsd_protocol.control import DnsdControl
from netcore.system.logfile import LOG_MAX_BYTES
from tests.support.dns import dig
from tests.support.sandbox import wait_for


def dnsd_argv(sandbox) -> list[str]:
    pid = DnsdControl(sandbox.state_dir, sandbox.prefix).status()[0]
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0")[:-1]]


def stop_dnsd(sandbox) -> None:
    control = DnsdControl(sandbox.state_dir, sandbox.prefix)
    control.stop()
    assert control.status() is None


@pytest.fixture
def app(sandbox):
    sandbox.nc("network", "create", "--subnet", "10.77.0.0/24", "app")
    sandbox.nc("run", "--name", "web", "--net", "app")
    sandbox.nc("run", "--name", "client", "--net", "app")
    return sandbox


@pytest.mark.parametrize("command", [["network", "ls"], ["ps"], ["port", "web"], ["network", "inspect", "app"],
                                     ["inspect", "web"]], ids=lambda c: "-".join(c))
def test_every_command_restarts_a_dnsd_that_was_stopped(app, command):
    stop_dnsd(app)
    app.nc(*command)
    assert DnsdControl(app.state_dir, app.prefix).status() is not None
    [doc] = json.loads(app.nc("network", "inspect", "app").stdout)
    assert doc["DNS"]["Listening"] is True
    assert dig(app, "client", "web")[:2] == ("NOERROR", ["10.77.0.2"])


def test_dns_options_set_restarts_dnsd_with_them_and_keeps_the_old_ones_when_dnsd_refuses(app):
    changed = app.nc("dns-options", "set", "--", "--ttl", "7")
    assert changed.stdout == "--ttl 7\n"
    assert dnsd_argv(app)[-2:] == ["--ttl", "7"]
    assert app.nc("dns-options").stdout == "--ttl 7\n"
    assert "7" in app.exec("client", "dig", "+time=2", "+tries=1", "+noall", "+answer", "web").stdout.split()
    refused = app.nc("dns-options", "set", "--", "--bogus", check=False)
    assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith("netcore: dnsd options not changed: ") and "bogus" in refused.stderr
    assert app.nc("dns-options").stdout == "--ttl 7\n"
    assert dnsd_argv(app)[-2:] == ["--ttl", "7"] and dig(app, "client", "web")[:2] == ("NOERROR", ["10.77.0.2"])
    app.nc("dns-options", "reset")
    assert "--ttl" not in dnsd_argv(app) and app.nc("dns-options").stdout == "\n"


def test_an_options_file_changed_by_hand_is_picked_up_by_the_next_command_even_a_read(app):
    before = DnsdControl(app.state_dir, app.prefix).status()[0]
    with open(os.path.join(app.state_dir, "dnsd.options"), "w") as f:
        f.write("--ttl 9  # by hand\n")
    proc = app.nc("ps")
    assert "restarted dnsd" in proc.stderr
    assert DnsdControl(app.state_dir, app.prefix).status()[0] != before and dnsd_argv(app)[-2:] == ["--ttl", "9"]
    assert dig(app, "client", "web")[:2] == ("NOERROR", ["10.77.0.2"])


def test_dnsd_log_is_rotated_and_dnsd_goes_on_writing_to_it(app):
    log = os.path.join(app.state_dir, "dnsd.log")
    with open(log, "ab") as f:
        f.write(b"x" * (LOG_MAX_BYTES + 1000) + b"\n")
    app.nc("ps")
    assert os.path.getsize(log) < LOG_MAX_BYTES and os.path.getsize(log + ".1") > LOG_MAX_BYTES
    stop_dnsd(app)  # its supervisor and dnsd say so in the log they keep open ...
    app.nc("ps")  # ... and the one started anew writes there too
    assert wait_for(lambda: os.path.getsize(log) > 0)
