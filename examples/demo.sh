#!/usr/bin/env bash
# The quick-start demo: a user-defined bridge with containers in a sandbox namespace,
# dnsd answering their names, `ping web` resolving, and an alias spread over three.
# Everything it creates is removed on exit. Run as root: sudo bash examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup demo >/dev/null  # Debian's packages the demo uses, and the project in .venv
netcore() { .venv/bin/python -m netcore "$@"; }

export NETCORE_NETNS="demo$$" NETCORE_STATE_DIR
NETCORE_STATE_DIR=$(mktemp -d /tmp/netcore-demo.XXXXXX)
trap 'netcore purge; rm -rf "$NETCORE_STATE_DIR"' EXIT

step() { printf '\n\033[1m$ netcore %s\033[0m\n' "$*"; netcore "$@"; }

step network create --subnet 10.42.0.0/24 app
step run --name web --net app
step run --name client --net app
step exec client -- ping -c1 -W2 web
step exec client -- getent hosts web
step exec client -- dig +short web.app

echo; echo "# three containers share the alias 'api': every answer holds all three, the first rotating"
for i in 1 2 3; do step run --name "api$i" --net app --net-alias api >/dev/null; done
for i in 1 2 3 4 5 6; do
    printf 'query %d: %s\n' "$i" "$(netcore exec client -- dig +short api | paste -sd' ')"
done

echo; echo "# 'web' joins the default bridge later (no names there, as in Docker)"
step network connect bridge web
step ps
step exec client -- dig -x 10.42.0.2 +short
