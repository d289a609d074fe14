"""Faults replayed from public bug reports (issue 11): what running processes see, and removal with shared namespaces."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

# A long-running process inside a container: asks glibc for `web` every 0.2 s and says when it gets an address.
RESOLVER_LOOP = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
print("started", flush=True)
while time.monotonic() < deadline:
    try:
        address = socket.getaddrinfo("web", None, socket.AF_INET)[0][4][0]
    except socket.gaierror:
        time.sleep(0.2)
        continue
    print("resolved", address, time.monotonic(), flush=True)
    sys.exit(0)
print("gave up", flush=True)
sys.exit(1)
"""


def test_a_running_process_resolves_names_of_a_network_connected_after_it_started(sandbox):
    """podman#11042: the container's resolv.conf must change in place, under the bind mount `exec` made."""
    sandbox.nc("run", "--name", "client")  # the default bridge only: no embedded DNS in its resolv.conf
    assert "nameserver" not in sandbox.exec("client", "cat", "/etc/resolv.conf").stdout
    proc = sandbox.popen("exec", "client", "--", "python3", "-c", RESOLVER_LOOP, "12",
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)  # it has failed to resolve `web` at least once: glibc has read the old resolv.conf
    sandbox.nc("network", "create", "--subnet", "10.71.0.0/24", "thatnet")
    sandbox.nc("run", "--name", "web", "--net", "thatnet")
    sandbox.nc("network", "connect", "thatnet", "client")
    connected = time.monotonic()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    word, address, when = out.split()
    assert (word, address) == ("resolved", "10.71.0.2")
    assert float(when) - connected < 3.0  # it re-read the file on its next lookups, within a few seconds
