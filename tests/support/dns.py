"""Asking dnsd from inside a sandbox's containers: dig's answer read, musl's getaddrinfo timed (the client built by
tests/support/musl.py), a container's address and namespace, and dns_probe.py (a program: run it in a container's
namespace with ``sys.executable PROBE MODE ...``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

MUSL_TIMEOUT = 5.0  # musl's resolv.conf default: a SERVFAIL or an ignored REFUSED is retried until then
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_probe.py")


def dig(sandbox, container: str, *args: str) -> tuple[str, list[str], str]:
    """(status, answer rdata list, header flags) of one dig run inside a container."""
    out = sandbox.exec(container, "dig", "+time=2", "+tries=1", *args, check=False).stdout
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]+);", out)
    answers = []
    section = False
    for line in out.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = True
        elif section and not line.strip():
            section = False
        elif section:
            answers.append(line.split()[-1])
    return (status.group(1) if status else "NO-REPLY"), answers, (flags.group(1) if flags else "")


def container_ip(sandbox, name: str, network: str) -> str:
    return json.loads(sandbox.nc("inspect", name).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def container_ns(sandbox, name: str) -> str:
    return json.loads(sandbox.nc("inspect", name).stdout)[0]["NetworkSettings"]["SandboxKey"].rsplit("/", 1)[1]


def musl(sandbox, container: str, musl_resolve: str, name: str, family: str = "4") -> tuple[int, list[str], float]:
    """(exit status, output lines, seconds taken) of musl's getaddrinfo for ``name`` inside ``container``.

    Run by ``ip netns exec`` (which mounts the namespace's /etc/netns files, as ``netcore exec`` does), so the
    seconds are the resolver's and not a Python interpreter's start on a busy machine."""
    namespace = container_ns(sandbox, container)
    started = time.monotonic()
    proc = subprocess.run(["ip", "netns", "exec", namespace, musl_resolve, name, family], capture_output=True,
                          text=True, timeout=MUSL_TIMEOUT * 3)
    return proc.returncode, proc.stdout.splitlines(), time.monotonic() - started
