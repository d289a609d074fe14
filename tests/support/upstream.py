"""fake_upstream.py (a program: a DNS server that answers as told and logs what it gets) as a sandbox's upstream."""

from __future__ import annotations

import os
import subprocess
import sys

FAKE_UPSTREAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_upstream.py")


def start_upstream(sandbox, namespace: str, address: str, *options: str) -> subprocess.Popen:
    """fake_upstream.py on ``address`` port 53 inside ``namespace``, stopped by the sandbox's teardown."""
    proc = sandbox.spawn_in(namespace, sys.executable, FAKE_UPSTREAM, "--address", address, *options,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.poll() is not None else ""
    return proc
