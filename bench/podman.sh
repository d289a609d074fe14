#!/usr/bin/env bash
# dnsd against aardvark-dns as Podman's DNS server, each started by netavark (issue 17).
#
#   sudo bench/podman.sh [--containers N] [--seconds S] [--inflight Q] [--servers dnsd,aardvark]
#   sudo bench/podman.sh --storm SECONDS     # the SIGHUP storm of tests/integration/test_podman.py, that long
#
# Throughput: one Podman network of N busybox `sleep` containers (default 100) per server, in a
# sandbox namespace of its own (tests/support/podman_box.py); dnsperf inside the first
# container's namespace asks random container names of the network's gateway. Table on stdout and
# in bench/results/podman-<timestamp>.txt. Containers, networks, namespaces and the imported image
# are removed at the end, also on failure.
#
# Storm: a container started and the one before removed, back to back, as fast as Podman goes
# (each change is one netavark SIGHUP), while a container asks a stable name; counts lost queries
# and stale answers, for dnsd and for Debian's aardvark-dns. The test suite runs it for 8 s.
set -Eeuo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--storm" ]; then
    PODMAN_STORM_SECONDS=${2:?--storm needs SECONDS} exec python3 -m pytest -q -s -p no:cacheprovider \
        "tests/integration/test_podman.py::test_a_sighup_storm_loses_no_query_and_answers_no_stale_name"
fi
exec python3 bench/podman.py "$@"
