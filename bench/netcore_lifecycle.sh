#!/usr/bin/env bash
# Per-container create and remove: netcore beside netavark and a plain `ip` script (bench/lifecycle.py).
#   sudo bash bench/netcore_lifecycle.sh [--containers 50,500] [--block 10] [--skip-netavark] [--compare DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$python" bench/lifecycle.py "$@"
