"""Root-only tests in sandbox mode: every test gets its own gateway namespace and state dir."""

from __future__ import annotations

import os

import pytest

from tests.support.sandbox import cleanup, new_sandbox

if os.geteuid() != 0:
    pytest.skip("integration tests need root (they create network namespaces)", allow_module_level=True)


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
