"""Fixtures more than one of dnsd's unit tests use (those of dnsd and netcore alike are in tests/unit/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.support.dnsd_lan import A1, B1, GATEWAY_A, GATEWAY_B

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture
def lan(world):
    """neta and netb on 127.0.1.0/24 and 127.0.2.0/24 (test_server.py, test_hostile.py; test_answer.py and
    test_host_names.py have a ``lan`` of their own)."""
    world.net_a = world.network("neta", "127.0.1.0/24", GATEWAY_A)
    world.net_b = world.network("netb", "127.0.2.0/24", GATEWAY_B)
    world.container("a1", world.net_a, A1)
    world.container("a2", world.net_a, "127.0.1.3", aliases=("web",))
    world.container("b1", world.net_b, B1)
    return world


# -- aardvark-dns's run mode (test_aardvark_run.py, test_aardvark_answers.py) -----------------------------------------


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    named = str(tmp_path_factory.mktemp("helper") / "bin")
    out = subprocess.run([sys.executable, "-m", "dnsd", "podman-helper-dir", named], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout.strip()
    assert out == named
    path = os.path.join(out, "aardvark-dns")
    with open(path) as script:
        assert script.readline() == f"#!{sys.executable}\n"
    assert os.access(path, os.X_OK)
    return path


@pytest.fixture
def port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
