#!/usr/bin/env bash
# The test command of the README: installs what is missing, lints the tree, then runs every test.
# Unit tests need nothing; integration tests need root and run in sandbox namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
python3 -m ruff check .  # configuration in pyproject.toml; a finding fails the run before any test
exec python3 -m pytest -q -p no:cacheprovider tests "$@"
