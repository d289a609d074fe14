"""musl's getaddrinfo as a real client: tests/support/clients/resolve.c built with musl-gcc -static.

Debian 12's musl is 1.2.3, the resolver of Alpine up to 3.17: it asks every nameserver of resolv.conf
at once and keeps the first reply, ignores REFUSED, retries SERVFAIL until its 5 s timeout, and never
retries a truncated (TC) reply over TCP. Tests that need it skip, with the reason, where musl-gcc is
missing (.ci/setup installs Debian's musl-tools).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients", "resolve.c")


def build_resolve(directory: str) -> str:
    """The path of the static musl `resolve` binary, built into ``directory``; skips the test without musl-gcc."""
    compiler = shutil.which("musl-gcc")
    if compiler is None:
        pytest.skip("musl-gcc is not installed (Debian package musl-tools)")
    binary = os.path.join(directory, "musl-resolve")
    subprocess.run([compiler, "-static", "-O1", "-o", binary, SOURCE], check=True, capture_output=True)
    return binary
