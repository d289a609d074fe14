"""Forwarding end to end, in sandbox mode, with real clients: dig, and musl's getaddrinfo (see musl.py).

Every upstream here is tests/integration/fake_upstream.py, started inside a namespace of the test's own sandbox.
"""

from __future__ import annotations

import time

from test_dns_e2e import dig

MUSL_TIMEOUT = 5.0  # musl's resolv.conf default: a SERVFAIL or an ignored REFUSED is retried until then
FAILS_FAST = 2.0  # a bound on correctness, not on speed: well under MUSL_TIMEOUT


def musl(sandbox, container: str, musl_resolve: str, name: str, family: str = "4") -> tuple[int, list[str], float]:
    """(exit status, output lines, seconds taken) of musl's getaddrinfo for ``name`` inside ``container``."""
    started = time.monotonic()
    proc = sandbox.exec(container, musl_resolve, name, family, check=False, timeout=MUSL_TIMEOUT * 3)
    return proc.returncode, proc.stdout.splitlines(), time.monotonic() - started


# -- no way out: NXDOMAIN at once ------------------------------------------------------------------


def test_an_internal_network_fails_outside_names_at_once_for_musl(sandbox, musl_resolve):
    sandbox.nc("network", "create", "--internal", "--subnet", "10.66.0.0/24", "--dns", "127.0.0.1", "inside")
    sandbox.nc("run", "--name", "lonely", "--net", "inside")
    sandbox.nc("run", "--name", "neighbour", "--net", "inside")
    status, output, seconds = musl(sandbox, "lonely", musl_resolve, "outside.example")
    assert status == 2 and output[0].startswith("error:"), output
    assert seconds < FAILS_FAST, f"musl took {seconds:.1f} s to fail (its timeout is {MUSL_TIMEOUT:g} s)"
    assert dig(sandbox, "lonely", "outside.example")[:2] == ("NXDOMAIN", [])
    assert musl(sandbox, "lonely", musl_resolve, "neighbour")[:2] == (0, ["10.66.0.3"])


def test_a_network_without_any_upstream_fails_outside_names_at_once_for_musl(sandbox, musl_resolve):
    sandbox.nc("network", "create", "--subnet", "10.67.0.0/24", "plain")  # sandbox mode: dnsd has no --upstream
    sandbox.nc("run", "--name", "asker", "--net", "plain")
    status, output, seconds = musl(sandbox, "asker", musl_resolve, "nowhere.example", "any")
    assert status == 2 and output[0].startswith("error:"), output
    assert seconds < FAILS_FAST, f"musl took {seconds:.1f} s to fail (its timeout is {MUSL_TIMEOUT:g} s)"
    assert dig(sandbox, "asker", "nowhere.example")[:2] == ("NXDOMAIN", [])
    assert dig(sandbox, "asker", "+tcp", "nowhere.example", "AAAA")[:2] == ("NXDOMAIN", [])
