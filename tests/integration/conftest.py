"""Root-only tests in sandbox mode: every test gets its own gateway namespace and state dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.sandbox import cleanup, new_sandbox


def pytest_collection_modifyitems(items):
    """Every test of this folder carries the ``root`` marker (pyproject.toml: ``-m "not root"`` leaves them out),
    and is skipped, with the reason, without root (a skip raised while this file loads would stop a run named
    this folder with a traceback)."""
    here = Path(__file__).parent
    without_root = pytest.mark.skipif(os.geteuid() != 0, reason="integration tests need root (they create network "
                                      "namespaces)")
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.root)
            item.add_marker(without_root)


@pytest.fixture
def sandbox(tmp_path_factory):
    box = new_sandbox(state_dir=str(tmp_path_factory.mktemp("state")))
    try:
        yield box
    finally:
        cleanup(box)
        assert box.namespaces() == [], "teardown leaked namespaces"


@pytest.fixture(scope="session")
def musl_resolve(tmp_path_factory):
    """The static musl getaddrinfo client (see tests/support/musl.py): `netcore exec C -- <path> NAME [4|6|any]`."""
    from tests.support.musl import build_resolve

    return build_resolve(str(tmp_path_factory.mktemp("musl")))
