#!/usr/bin/env bash
# The test command of the README: installs what is missing (.ci/setup: Debian's packages, and the project
# into .venv), lints the tree, then runs every test with .venv's python.
# Unit tests need nothing; integration tests need root and run in sandbox namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup test
python=.venv/bin/python
"$python" -m ruff check .  # configuration in pyproject.toml; a finding fails the run before any test
exec "$python" -m pytest -q -p no:cacheprovider tests "$@"
