#!/usr/bin/env bash
# The test command of the README: installs what is missing (.ci/setup: Debian's packages, and the project
# into .venv), lints the tree, then runs every test with .venv's python.
# Unit tests need nothing; integration tests need root and run in sandbox namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup test
python=.venv/bin/python
# byte code kept between processes and runs, in .venv (an environment with PYTHONDONTWRITEBYTECODE set would have
# every pytest worker, agent and CLI compile each module and rewrite each test's asserts anew: ~4 s of CPU a
# worker); the checkout itself gets no __pycache__
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX="$PWD/.venv/pycache"
"$python" -m ruff check .  # configuration in pyproject.toml; a finding fails the run before any test
# the unit tests alone, four at once on two cores (pure, no root: they also run as an unprivileged user; half their
# time is waiting on timeouts, sockets and child processes, which four workers overlap), then the integration
# tests, three files at once (pytest-xdist: each test in its own sandbox namespaces; a file's tests stay on one
# worker, so a module's shared fixture, such as the Podman world, is made once). Layout: docs/testing.md.
"$python" -m pytest -q -p no:cacheprovider -n 4 tests/unit "$@"
exec "$python" -m pytest -q -p no:cacheprovider -n 3 --dist loadfile tests/integration "$@"
