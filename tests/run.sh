#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs every test.
# Unit tests need nothing; integration tests need root and run in sandbox namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
exec python3 -m pytest -q -p no:cacheprovider tests "$@"
