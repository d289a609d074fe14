#!/usr/bin/env bash
# Creates and removes N containers (default 100) on one network through the netcore
# CLI, then does the same kernel work as a plain `ip` script, and prints per-container
# milliseconds for both. Everything happens in namespaces made here and removed on exit.
#   sudo bash bench/netcore_lifecycle.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100}
PREFIX="ncl$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')"
STATE=$(mktemp -d)
export NETCORE_NETNS="$PREFIX" NETCORE_STATE_DIR="$STATE" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
IPGW="${PREFIX}ip"

cleanup() {
    python3 -m netcore purge >/dev/null 2>&1 || true
    for ns in $(ip netns list | awk '{print $1}' | grep "^${PREFIX}" || true); do ip netns delete "$ns"; done
    rm -rf "$STATE" /etc/netns/"${PREFIX}"*
}
trap cleanup EXIT

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

python3 -m netcore network create --subnet 10.201.0.0/16 bench >/dev/null

start=$(date +%s%N)
for i in $(seq 0 $((N - 1))); do python3 -m netcore run --name "c$i" --net bench >/dev/null; done
nc_create=$(ms_since "$start")
start=$(date +%s%N)
for i in $(seq 0 $((N - 1))); do python3 -m netcore rm "c$i" >/dev/null; done
nc_remove=$(ms_since "$start")

# The same steps with iproute2: namespace, veth born in it, bridge port, MAC, MTU,
# address, default route, loopback, resolv.conf/hosts; then removal.
ip netns add "$IPGW"
ip -n "$IPGW" link add br-bench type bridge
ip -n "$IPGW" addr add 10.202.0.1/16 dev br-bench
ip -n "$IPGW" link set br-bench up
start=$(date +%s%N)
for i in $(seq 0 $((N - 1))); do
    ns="${PREFIX}c$i"; veth="veth$(printf '%07x' "$i")"; addr="10.202.$((i / 250)).$((i % 250 + 2))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$IPGW" link add "$veth" mtu 1500 type veth peer name eth0 netns "$ns"
    ip -n "$IPGW" link set "$veth" master br-bench up
    ip -n "$ns" link set eth0 address "02:42:0a:ca:00:$(printf '%02x' $((i % 256)))" mtu 1500 up
    ip -n "$ns" addr add "$addr/16" dev eth0
    ip -n "$ns" route add default via 10.202.0.1
    mkdir -p "/etc/netns/$ns"
    printf 'nameserver 10.202.0.1\n' >"/etc/netns/$ns/resolv.conf"
    printf '127.0.0.1\tlocalhost\n%s\t%s\n' "$addr" "c$i" >"/etc/netns/$ns/hosts"
done
ip_create=$(ms_since "$start")
start=$(date +%s%N)
for i in $(seq 0 $((N - 1))); do
    ns="${PREFIX}c$i"
    ip -n "$IPGW" link del "veth$(printf '%07x' "$i")"
    ip netns delete "$ns"
    rm -rf "/etc/netns/$ns"
done
ip_remove=$(ms_since "$start")

printf '\n%-22s %12s %12s\n' "per container (ms)" "create" "remove"
printf '%-22s %12s %12s\n' "netcore CLI" "$(div "$nc_create" "$N")" "$(div "$nc_remove" "$N")"
printf '%-22s %12s %12s\n' "ip script" "$(div "$ip_create" "$N")" "$(div "$ip_remove" "$N")"
printf '%-22s %12s %12s\n' "ratio netcore/ip" "$(div "$nc_create" "$ip_create")" "$(div "$nc_remove" "$ip_remove")"
