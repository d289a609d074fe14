#!/usr/bin/env bash
# Cache benchmark (issue 16): dnsd's forwarded-answer cache side by side with dnsmasq's cache and aardvark-dns
# (no cache), the CPU of a cached answer against a local one, the cost of --metrics, and dnsd's memory under a
# flood of random names. One run; the table goes to stdout and bench/results/cache-<timestamp>.txt.
#
#   sudo bench/cache.sh [--seconds S] [--names N]
#
# Everything happens inside network namespaces named <prefix>* (prefix ncc + 6 random hex digits) that this
# script creates and removes on exit, also on failure or Ctrl-C:
#
#   <prefix>gw       netcore's gateway namespace: bridge <prefix>br, 10.202.0.0/16, 100 containers (records)
#                    dnsd (started by netcore) on 10.202.0.1, its default upstream set by STATE/dnsd.options;
#                    aardvark-dns on 10.202.255.2, dnsmasq with its cache on 10.202.255.3 (--server 127.0.0.2);
#                    the slow upstream: fake_upstream.py on 127.0.0.2, answering after 1 ms;
#                    the fast upstream (memory run): dnsmasq on 127.0.0.3 answering *.upstream.test itself
#   <prefix>gw-<id>  one namespace per container (netcore up); dnsperf runs in c0's
#
# Servers are pinned to CPU 0, dnsperf to CPU 1, as bench/dns.sh does.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
DURATION=10
NAMES=1000000
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) DURATION=$2; shift 2 ;;
        --names) NAMES=$2; shift 2 ;;
        -h|--help) sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "cache.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for value in "$DURATION" "$NAMES"; do
    [[ $value =~ ^[0-9]+$ ]] && [ "$value" -gt 0 ] || { echo "cache.sh: not a positive number: $value" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "cache.sh: run as root (it creates network namespaces)" >&2; exit 1; }

PREFIX=ncc$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
GWNS=${PREFIX}gw
BRIDGE=${PREFIX}br
NETWORK=benchnet
GATEWAY=10.202.0.1
AARDVARK_IP=10.202.255.2
DNSMASQ_IP=10.202.255.3
SLOW_UPSTREAM=127.0.0.2
FAST_UPSTREAM=127.0.0.3
RECORDS=100
SERVER_CPU=0
LOAD_CPU=1
FIXED_QPS=5000       # the offered rate of the CPU-per-query runs
ETC_NETNS_EXISTED=0; [ -d /etc/netns ] && ETC_NETNS_EXISTED=1
WORK=$(mktemp -d "/tmp/${PREFIX}.XXXXXX")
chmod 755 "$WORK"
STATE=$WORK/state
VALUES=$WORK/values.txt
STARTED_PIDS=()

# shellcheck source=bench/measure.sh
source "$BENCH_DIR/measure.sh"
exec {STDOUT_FD}>&1 {STDERR_FD}>&2

set_traps sandbox_cleanup

netcore() {
    NETCORE_NETNS=$GWNS NETCORE_STATE_DIR=$STATE PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} python3 -m netcore "$@"
}
setup_py() { python3 "$BENCH_DIR/dns_setup.py" "$@"; }
cache_py() { python3 "$BENCH_DIR/cache_setup.py" "$@"; }
record() { echo "$1=$2" >>"$VALUES"; }
wait_answering() {  # server name
    ip netns exec "$C0NS" python3 "$BENCH_DIR/dns_setup.py" probe --server "$1" --name "$2" --timeout 15
}

# dnsd with these options (STATE/dnsd.options): stop the one running, let a netcore action start the next.
dnsd_with() {
    echo "$*" >"$STATE/dnsd.options"
    if [ -e "$STATE/dnsd.pid" ]; then
        NETCORE_NETNS=$GWNS NETCORE_STATE_DIR=$STATE PYTHONPATH=$REPO python3 -c \
            'import os; from netcore.dnsd_control import DnsdControl
DnsdControl(os.environ["NETCORE_STATE_DIR"], os.environ["NETCORE_NETNS"]).stop()'
    fi
    netcore network create --subnet "10.203.$((RANDOM % 250)).0/24" "kick$RANDOM" >/dev/null  # an action: dnsd starts
    DNSD_PID=$(cat "$STATE/dnsd.pid")
    taskset -a -p -c "$SERVER_CPU" "$DNSD_PID" >/dev/null
    wait_answering "$GATEWAY" c0
}

# dnsperf from c0 against SERVER with FILE; prints QPS; extra dnsperf options after.
qps() {  # server file extra...
    local server=$1 file=$2 out
    shift 2
    out=$WORK/dnsperf-$RANDOM.txt
    wait_quiet >/dev/null
    timeout $((DURATION + 600)) ip netns exec "$C0NS" taskset -c "$LOAD_CPU" \
        dnsperf -s "$server" -d "$file" -b "$DNSPERF_BUFFER_KB" "$@" >"$out" 2>&1 \
        || { echo "cache.sh: dnsperf failed against $server: $(tail -3 "$out")" >&2; exit 1; }
    awk '/Queries per second/ {print $4}' "$out"
}

# dnsd's CPU per query (microseconds) at FIXED_QPS with FILE.
cpu_per_query() {  # file
    local before after completed out=$WORK/cpu-$RANDOM.txt
    wait_quiet >/dev/null
    before=$(cpu_ns "$DNSD_PID")
    ip netns exec "$C0NS" taskset -c "$LOAD_CPU" dnsperf -s "$GATEWAY" -d "$1" -l "$DURATION" -Q "$FIXED_QPS" \
        -b "$DNSPERF_BUFFER_KB" >"$out" 2>&1
    after=$(cpu_ns "$DNSD_PID")
    completed=$(awk '/Queries completed/ {print $3}' "$out")
    awk -v ns=$((after - before)) -v n="$completed" 'BEGIN {printf "%.2f", ns / n / 1e3}'
}

metric() {  # name: its value from dnsd's /metrics (on 127.0.0.1:9153 of the gateway namespace)
    ip netns exec "$GWNS" python3 -c 'import sys, urllib.request
for line in urllib.request.urlopen("http://127.0.0.1:9153/metrics", timeout=5).read().decode().splitlines():
    if line.split(" ")[0] == sys.argv[1]: print(line.split(" ")[1])' "$1"
}

main() {
    local aardvark distinct
    aardvark=$(find_aardvark)
    [ -n "$aardvark" ] && command -v dnsmasq >/dev/null && command -v dnsperf >/dev/null \
        || { echo "cache.sh: needs aardvark-dns, dnsmasq and dnsperf (see bench/dns.sh)" >&2; exit 1; }
    log "sandbox $PREFIX*, work dir $WORK"
    mkdir -p "$STATE"
    echo "--upstream $SLOW_UPSTREAM" >"$STATE/dnsd.options"
    setup_py topology --records "$RECORDS" --network "$NETWORK" --subnet 10.202.0.0/16 --ip-range 10.202.0.0/17 \
        --gateway "$GATEWAY" --bridge "$BRIDGE" --out "$WORK/topology.yaml" >/dev/null
    netcore up -f "$WORK/topology.yaml" >"$WORK/up.log" 2>&1
    netcore inspect c0 >"$WORK/inspect.json"
    C0NS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["NetworkSettings"]["SandboxKey"].rsplit("/",1)[1])' \
        "$WORK/inspect.json")
    mapfile -t names < <(seq -f "c%.0f" 0 $((RECORDS - 1)))
    netcore inspect "${names[@]}" >"$WORK/inspect.json"
    mkdir -p "$WORK/aardvark"
    setup_py peers --records "$RECORDS" --network "$NETWORK" --inspect "$WORK/inspect.json" \
        --aardvark-file "$WORK/aardvark/$NETWORK" --aardvark-listen "$AARDVARK_IP" --hosts-file "$WORK/hosts" \
        --queries "$WORK/local.txt" >/dev/null
    sed -i "1s/.*/$AARDVARK_IP $SLOW_UPSTREAM/" "$WORK/aardvark/$NETWORK"  # its network's upstream
    distinct=$(cache_py zipf --out "$WORK/zipf.txt")
    log "Zipf-like query file: 1000 queries over $distinct distinct names"

    ip -n "$GWNS" addr add "$AARDVARK_IP/32" dev "$BRIDGE"
    ip -n "$GWNS" addr add "$DNSMASQ_IP/32" dev "$BRIDGE"
    mkdir -p "/etc/netns/$GWNS"
    echo "nameserver $SLOW_UPSTREAM" >"/etc/netns/$GWNS/resolv.conf"
    ip netns exec "$GWNS" python3 "$REPO/tests/support/fake_upstream.py" --address "$SLOW_UPSTREAM" \
        --delay 1 >"$WORK/upstream.log" 2>&1 &
    STARTED_PIDS+=("$!")
    ip netns exec "$GWNS" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --listen-address="$FAST_UPSTREAM" \
        --bind-interfaces --port=53 --pid-file= --address=/upstream.test/192.0.2.1 --local-ttl=60 \
        --cache-size=0 --log-facility="$WORK/fast.log" &
    STARTED_PIDS+=("$!")
    ip netns exec "$GWNS" taskset -c "$SERVER_CPU" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts \
        --listen-address="$DNSMASQ_IP" --bind-interfaces --port=53 --pid-file= --server="$SLOW_UPSTREAM" \
        --cache-size=10000 --log-facility="$WORK/dnsmasq.log" &
    STARTED_PIDS+=("$!")
    ip netns exec "$GWNS" taskset -c "$SERVER_CPU" "$aardvark" --config "$WORK/aardvark" -p 53 run \
        2>"$WORK/aardvark.log"
    STARTED_PIDS+=("$(cat "$WORK/aardvark/aardvark.pid")")
    DNSD_PID=$(cat "$STATE/dnsd.pid")
    taskset -a -p -c "$SERVER_CPU" "$DNSD_PID" >/dev/null
    wait_answering "$GATEWAY" n1.upstream.test
    wait_answering "$DNSMASQ_IP" n1.upstream.test
    wait_answering "$AARDVARK_IP" n1.upstream.test
    : >"$VALUES"

    log "1. Zipf-like outside names, ${DURATION}s each"
    for server in dnsd:$GATEWAY dnsmasq:$DNSMASQ_IP aardvark:$AARDVARK_IP; do
        record "qps_zipf_${server%%:*}" "$(qps "${server#*:}" "$WORK/zipf.txt" -l "$DURATION" -q 200)"
        log "   ${server%%:*}: $(tail -1 "$VALUES")"
    done
    log "2. CPU per query, local vs cached, at $FIXED_QPS QPS"
    record cpu_us_local "$(cpu_per_query "$WORK/local.txt")"
    qps "$GATEWAY" "$WORK/zipf.txt" -n 2 -q 50 >/dev/null  # every name in the cache again (TTL 60 s)
    record cpu_us_cached "$(cpu_per_query "$WORK/zipf.txt")"
    log "   $(tail -2 "$VALUES" | tr '\n' ' ')"
    log "3. local names, metrics off, then on"
    record qps_local_plain "$(qps "$GATEWAY" "$WORK/local.txt" -l "$DURATION" -q 200)"
    dnsd_with --upstream "$FAST_UPSTREAM" --metrics
    record qps_local_metrics "$(qps "$GATEWAY" "$WORK/local.txt" -l "$DURATION" -q 200)"
    log "   $(tail -2 "$VALUES" | tr '\n' ' ')"
    log "4. $NAMES random names through the cache (fast upstream)"
    local first=$((NAMES / 5))
    cache_py random --out "$WORK/random1.txt" --lines "$first"
    cache_py random --out "$WORK/random2.txt" --lines $((NAMES - first))
    qps "$GATEWAY" "$WORK/random1.txt" -n 1 -q 100 >/dev/null  # within dnsd's in-flight share of one client
    record names_first "$first"
    record rss_first_kb "$(rss_kb "$DNSD_PID")"
    qps "$GATEWAY" "$WORK/random2.txt" -n 1 -q 100 >/dev/null
    record names_total "$NAMES"
    record rss_total_kb "$(rss_kb "$DNSD_PID")"
    record cache_entries "$(metric dnsd_cache_entries)"
    record cache_evictions "$(metric dnsd_cache_evictions_total)"

    local stamp title out
    stamp=$(date +%Y%m%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    out=$BENCH_DIR/results/cache-$stamp.txt
    title="Cache benchmark $stamp, one run, ${DURATION}s per QPS case, dnsperf -q 200 from a container"
    title+=$'\n'"$(machine_description); servers pinned to CPU $SERVER_CPU, dnsperf to CPU $LOAD_CPU"
    title+=$'\n'"aardvark-dns $("$aardvark" version 2>/dev/null | awk -F'"' '/"version"/ {print $4}')"
    title+=", dnsmasq $(dnsmasq --version | awk 'NR==1 {print $3}') --cache-size=10000; $(code_description "$REPO")"
    cache_py report "$VALUES" --title "$title" --out "$out"
    log "table written to ${out#"$REPO"/}"
}

main
