#!/usr/bin/env bash
# DNS benchmark: dnsd side by side with aardvark-dns and dnsmasq, same records, same run (issue 4).
#
#   sudo bench/dns.sh [--records N] [--seconds S] [--runs R] [--mode qps|cpu|sweep] [--rates LIST] [--staleness PAIRS]
#                     [--code DIR]
#
# Everything happens inside network namespaces named <prefix>* (prefix ncb + 6 random hex
# digits) that this script creates and removes on exit, also on failure or Ctrl-C:
#
#   <prefix>gw       netcore's gateway namespace (NETCORE_NETNS). Bridge <prefix>br, subnet 10.201.0.0/16.
#                    dnsd (started by netcore)  on 10.201.0.1:53, the network's gateway address;
#                    aardvark-dns               on 10.201.255.2:53 } extra /32 addresses on the same bridge,
#                    dnsmasq                    on 10.201.255.3:53 } so all three run side by side
#   <prefix>gw-<id>  one namespace per container c0..cN-1 (made by `netcore up`)
#   <prefix>cli      the "stranger" client: a veth on the bridge, 10.201.255.100, no container's address
#
# The servers run pinned to CPU 0, dnsperf to CPU 1. dnsperf runs inside c0's namespace
# (an address every server knows as a container) and inside <prefix>cli.
# The table goes to stdout and bench/results/dns-<timestamp>.txt.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
CODE=$REPO           # --code: the checkout whose netcore and dnsd are measured (this one by default)

# ---- options ------------------------------------------------------------------
RECORDS=100
DURATION=10          # seconds per dnsperf run
RUNS=3
MODE=qps             # qps: as fast as each server goes; cpu: CPU per query at a fixed offered rate;
                     # sweep: latency (average, p99) and CPU per query at each of RATES (issue 18)
FIXED_QPS=20000      # the offered rate of --mode cpu
RATES=1000,2000,5000,10000,20000,50000  # the offered rates of --mode sweep, queries/s
STALENESS=200        # netcore run + lookup pairs after the benchmark (0: skip)
NAME_PREFIX=c        # containers are ${NAME_PREFIX}0..${NAME_PREFIX}N-1
KEEP=0               # --keep: leave everything up for a look around; Enter tears it down
SERVE_ONLY=0         # --serve-only: build and start, print where, measure nothing (for bench/dns_scale.sh)
SERVERS=dnsd,aardvark-dns,dnsmasq
NO_FIREWALL=0        # --no-firewall: netcore's nftables table deleted once the containers are up

usage() {
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<EOF
  --records N       names on the network (default 100). Up to 1000 each is a container; past
                    that, 1000 containers carry the remaining names as aliases (a Linux bridge
                    takes at most 1023 ports, see dns_setup.py)
  --seconds S       length of each dnsperf run (default 10)
  --runs R          runs per case; the table shows medians (default 3)
  --mode qps|cpu|sweep
                    qps: in-flight 200 and 1000, unlimited rate; cpu: -Q $FIXED_QPS; sweep: -Q at each
                    of --rates from a container, 200 in flight, with every query's latency (dnsperf -v)
                    for the 99th percentile (default qps)
  --rates LIST      offered rates of --mode sweep, comma-separated queries/s (default $RATES)
  --staleness N     netcore run/rm + lookup pairs against dnsd afterwards (default 200, 0: skip)
  --name-prefix P   container names P0..PN-1 (default c)
  --servers LIST    comma-separated subset of dnsd,aardvark-dns,dnsmasq (default all three)
  --code DIR        measure the netcore and dnsd of another checkout (a worktree of an older commit,
                    its _replay.c built if it has one); this script, its helpers and its
                    results stay this checkout's, so two codes are measured the same way
  --no-firewall     delete netcore's nftables table in the gateway namespace once the containers are
                    up: every server measured without netfilter's per-packet work there (its rules
                    and the connection tracking they switch on), as code from before the firewall ran
  --keep            wait for Enter before tearing down
  --serve-only      build the sandbox and start the servers, print one line 'ready KEY=VALUE...'
                    (c0ns, clientns, server, dnsd_pid, work, records) on stdout, measure nothing, and
                    tear down on Enter or end of input (bench/dns_scale.sh drives two of these)
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        --records) RECORDS=$2; shift 2 ;;
        --seconds) DURATION=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --rates) RATES=$2; shift 2 ;;
        --staleness) STALENESS=$2; shift 2 ;;
        --name-prefix) NAME_PREFIX=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --no-firewall) NO_FIREWALL=1; shift ;;
        --code) CODE=$(cd "$2" && pwd) || { echo "dns.sh: --code $2 is not a directory" >&2; exit 2; }; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --serve-only) SERVE_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "dns.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for value in "$RECORDS" "$DURATION" "$RUNS" "$STALENESS"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "dns.sh: not a number: $value" >&2; exit 2; }
done
if [ "$RECORDS" -lt 3 ] || [ "$RUNS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then
    echo "dns.sh: need --records >= 3, --runs >= 1, --seconds >= 1" >&2; exit 2
fi
case $MODE in qps|cpu|sweep) ;; *) echo "dns.sh: --mode is qps, cpu or sweep" >&2; exit 2 ;; esac
[[ $RATES =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || { echo "dns.sh: --rates is a comma-separated list of queries/s" >&2; exit 2; }
for server in ${SERVERS//,/ }; do
    case $server in dnsd|aardvark-dns|dnsmasq) ;; *) echo "dns.sh: unknown server $server in --servers" >&2; exit 2 ;; esac
done
wanted() { [[ ,$SERVERS, == *,$1,* ]]; }
[ -d "$CODE/netcore" ] && [ -d "$CODE/dnsd" ] || { echo "dns.sh: --code $CODE holds no netcore/ and dnsd/" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "dns.sh: run as root (it creates network namespaces)" >&2; exit 1; }

# ---- the sandbox's names and addresses ------------------------------------------
PREFIX=ncb$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
GWNS=${PREFIX}gw
CLIENTNS=${PREFIX}cli
BRIDGE=${PREFIX}br
STRANGER_VETH=${PREFIX}s0
NETWORK=benchnet
SUBNET=10.201.0.0/16
IP_RANGE=10.201.0.0/17     # containers get addresses here only, so 10.201.255.x stays free for us
GATEWAY=10.201.0.1         # dnsd listens here (netcore's choice: the network's gateway)
AARDVARK_IP=10.201.255.2
DNSMASQ_IP=10.201.255.3
STRANGER_IP=10.201.255.100
SERVER_CPU=0
LOAD_CPU=1

ETC_NETNS_EXISTED=0; [ -d /etc/netns ] && ETC_NETNS_EXISTED=1
WORK=$(mktemp -d "/tmp/${PREFIX}.XXXXXX")
chmod 755 "$WORK"          # dnsmasq reads its hosts file after dropping to nobody
STATE=$WORK/state          # NETCORE_STATE_DIR
STARTED_PIDS=()            # every process this script started that outlives a command

# shellcheck source=bench/measure.sh
source "$BENCH_DIR/measure.sh"  # log, now, DNSPERF_BUFFER_KB, cpu_ticks, rss_kb, wait_quiet, ...

# The teardown may start while a command's output is redirected to a file (Ctrl-C during
# `netcore up >up.log`); it goes back to the script's own stdout and stderr first.
exec {STDOUT_FD}>&1 {STDERR_FD}>&2

# ---- teardown: by PID and by our prefix only (measure.sh) ------------------------
set_traps sandbox_cleanup

# ---- tools ------------------------------------------------------------------------

# dnsmasq-base is the binary alone: no service, so nothing starts listening on the host.
ensure_packages() {
    local missing=()
    [ -n "$(find_aardvark)" ] || missing+=(aardvark-dns)
    command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
    command -v dnsperf >/dev/null || missing+=(dnsperf)
    command -v taskset >/dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    AARDVARK=$(find_aardvark)
    [ -n "$AARDVARK" ] || { echo "dns.sh: aardvark-dns not found after installing it" >&2; exit 1; }
}

netcore() {  # from CODE: `python3 -m` puts the working directory first on the path (dnsd, which netcore starts, too)
    (cd "$CODE" && NETCORE_NETNS=$GWNS NETCORE_STATE_DIR=$STATE PYTHONPATH=$CODE${PYTHONPATH:+:$PYTHONPATH} \
        python3 -m netcore "$@")
}

setup_py() { python3 "$BENCH_DIR/dns_setup.py" "$@"; }


# ---- building the sandbox ---------------------------------------------------------
create_containers() {
    setup_py topology --records "$RECORDS" --name-prefix "$NAME_PREFIX" --network "$NETWORK" \
        --subnet "$SUBNET" --ip-range "$IP_RANGE" --gateway "$GATEWAY" --bridge "$BRIDGE" \
        --format "$([ -d "$CODE/netcore/compose" ] && echo compose || echo topology)" \
        --out "$WORK/topology.yaml" >"$WORK/topology.txt"
    CONTAINERS=$(( RECORDS < 1000 ? RECORDS : 1000 ))
    log "netcore up: $(cat "$WORK/topology.txt")"
    local start status=0
    start=$(now)
    netcore up -f "$WORK/topology.yaml" >"$WORK/up.log" 2>&1 || status=$?
    UP_SECONDS=$(awk -v a="$(now)" -v b="$start" 'BEGIN {printf "%.1f", a - b}')
    if [ "$status" -ne 0 ]; then
        echo "dns.sh: netcore up failed ($status): $(tail -3 "$WORK/up.log")" >&2
        exit 1
    fi
    log "netcore up: $CONTAINERS containers in $UP_SECONDS s"
    local names=()
    mapfile -t names < <(seq -f "${NAME_PREFIX}%.0f" 0 $((CONTAINERS - 1)))
    if ! netcore inspect "${names[@]}" >"$WORK/inspect.json" 2>"$WORK/inspect.err"; then
        echo "dns.sh: netcore inspect failed: $(cat "$WORK/inspect.err")" >&2
        exit 1
    fi
    C0NS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["NetworkSettings"]["SandboxKey"].rsplit("/",1)[1])' \
        "$WORK/inspect.json")
}

# The same records for the peers, read back from netcore (what dnsd serves), and the query file.
write_peer_configs() {
    mkdir -p "$WORK/aardvark"
    setup_py peers --records "$RECORDS" --name-prefix "$NAME_PREFIX" --network "$NETWORK" \
        --inspect "$WORK/inspect.json" --aardvark-file "$WORK/aardvark/$NETWORK" \
        --aardvark-listen "$AARDVARK_IP" --hosts-file "$WORK/dnsmasq.hosts" --queries "$WORK/queries.txt" >/dev/null
    chmod 644 "$WORK/dnsmasq.hosts"
}

# Extra /32 addresses on the bridge in the gateway namespace: each peer gets its own
# address on the same bridge as dnsd's, so all three run side by side on the same path
# (no need to stop dnsd, which netcore would restart on its next action anyway).
add_peer_addresses() {
    ip -n "$GWNS" addr add "$AARDVARK_IP/32" dev "$BRIDGE"
    ip -n "$GWNS" addr add "$DNSMASQ_IP/32" dev "$BRIDGE"
    # aardvark-dns reads /etc/resolv.conf for names it does not know; `ip netns exec`
    # shows it this file instead of the host's. Every query is a known name anyway.
    mkdir -p "/etc/netns/$GWNS"
    echo "nameserver 127.0.0.1" >"/etc/netns/$GWNS/resolv.conf"
}

# The stranger client: a veth on the bridge whose address belongs to no container.
# Idempotent, because netcore's reconciliation deletes any unknown veth on its bridge
# at the start of every action.
ensure_stranger() {
    [ -e "/run/netns/$CLIENTNS" ] || { ip netns add "$CLIENTNS"; ip -n "$CLIENTNS" link set lo up; }
    ip -n "$GWNS" link show "$STRANGER_VETH" >/dev/null 2>&1 && return 0
    ip -n "$CLIENTNS" link del eth0 2>/dev/null || true
    ip -n "$GWNS" link add "$STRANGER_VETH" type veth peer name eth0 netns "$CLIENTNS"
    ip -n "$GWNS" link set "$STRANGER_VETH" master "$BRIDGE" up
    ip -n "$CLIENTNS" addr add "$STRANGER_IP/16" dev eth0
    ip -n "$CLIENTNS" link set eth0 up
}

wait_answering() {  # server-ip name-space
    ip netns exec "$2" python3 "$BENCH_DIR/dns_setup.py" probe --server "$1" --name "${NAME_PREFIX}0" --timeout 15
}

start_aardvark() {
    # `run` forks: the parent returns once the child wrote aardvark.pid; the child serves.
    ip netns exec "$GWNS" taskset -c "$SERVER_CPU" "$AARDVARK" --config "$WORK/aardvark" -p 53 run \
        2>"$WORK/aardvark.log"   # only "failed to connect to syslog": it logs to syslog
    AARDVARK_PID=$(cat "$WORK/aardvark/aardvark.pid")
    STARTED_PIDS+=("$AARDVARK_PID")
    wait_answering "$AARDVARK_IP" "$C0NS"
}

start_dnsmasq() {
    # No upstream (--no-resolv, no --server), no /etc/hosts, only our file; bound to its
    # own address; -k keeps it in the foreground so $! is its PID (ip netns exec and
    # taskset exec in place).
    ip netns exec "$GWNS" taskset -c "$SERVER_CPU" dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts \
        --addn-hosts="$WORK/dnsmasq.hosts" --listen-address="$DNSMASQ_IP" --bind-interfaces --port=53 \
        --pid-file= --log-facility="$WORK/dnsmasq.log" &
    DNSMASQ_PID=$!
    STARTED_PIDS+=("$DNSMASQ_PID")
    wait_answering "$DNSMASQ_IP" "$C0NS"
}

find_dnsd() {
    DNSD_PID=$(cat "$STATE/dnsd.pid")
    taskset -a -p -c "$SERVER_CPU" "$DNSD_PID" >/dev/null   # every thread, started by netcore
    wait_answering "$GATEWAY" "$C0NS"
    DNSD_RSS_IDLE=$(rss_kb "$DNSD_PID")
}

# ---- measuring --------------------------------------------------------------------
server_pid() { case $1 in dnsd) echo "$DNSD_PID" ;; aardvark-dns) echo "$AARDVARK_PID" ;; dnsmasq) echo "$DNSMASQ_PID" ;; esac; }
server_ip() { case $1 in dnsd) echo "$GATEWAY" ;; aardvark-dns) echo "$AARDVARK_IP" ;; dnsmasq) echo "$DNSMASQ_IP" ;; esac; }

measure() {  # run server client inflight [offered rate, 0: unlimited]
    local run=$1 server=$2 client=$3 inflight=$4 offered=${5:-0} ns pid before after before_ns after_ns out rate=() server_drops client_drops server_core load_core background
    pid=$(server_pid "$server")
    if [ "$client" = stranger ]; then ensure_stranger; ns=$CLIENTNS; else ns=$C0NS; fi
    if [ "$offered" -gt 0 ]; then rate=(-Q "$offered"); fi
    if [ "$MODE" = sweep ]; then rate+=(-v); fi  # one line per query with its latency: the p99
    out=$WORK/out/$run-$server-$client-$inflight-$offered.txt
    kill -0 "$pid" 2>/dev/null || { echo "dns.sh: $server (PID $pid) is not running" >&2; exit 1; }
    background=$(wait_quiet)
    before=$(cpu_ticks "$pid")
    before_ns=$(cpu_ns "$pid")
    server_drops=$(udp_rcvbuf_errors "$GWNS")
    client_drops=$(udp_rcvbuf_errors "$ns")
    server_core=$(cpu_busy_ticks "$SERVER_CPU")
    load_core=$(cpu_busy_ticks "$LOAD_CPU")
    timeout $((DURATION + 60)) ip netns exec "$ns" taskset -c "$LOAD_CPU" \
        dnsperf -s "$(server_ip "$server")" -d "$WORK/queries.txt" -l "$DURATION" -q "$inflight" -b "$DNSPERF_BUFFER_KB" "${rate[@]}" \
        >"$out" 2>&1 || { echo "dns.sh: dnsperf failed against $server: $(tail -3 "$out")" >&2; exit 1; }
    after=$(cpu_ticks "$pid")
    after_ns=$(cpu_ns "$pid")
    server_core=$(( $(cpu_busy_ticks "$SERVER_CPU") - server_core ))
    load_core=$(( $(cpu_busy_ticks "$LOAD_CPU") - load_core ))
    server_drops=$(( $(udp_rcvbuf_errors "$GWNS") - server_drops ))
    client_drops=$(( $(udp_rcvbuf_errors "$ns") - client_drops ))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$server" "$client" "$inflight" \
        $((after - before)) "$(getconf CLK_TCK)" "$(rss_kb "$pid")" "$server_drops" "$client_drops" \
        "$server_core" "$load_core" "$background" "$out" "$offered" \
        $((after_ns - before_ns)) >>"$WORK/cases.tsv"
    log "run $run/$RUNS $server $client q=$inflight${rate[*]:+ ${rate[*]}}: $(awk '/Queries per second/ {print $4}' "$out") QPS," \
        "lost $(awk '/Queries lost/ {print $3}' "$out") (rcvbuf drops: server side $server_drops, dnsperf side $client_drops)"
}

run_matrix() {
    local servers=() cases=() run i case client inflight
    if wanted dnsd; then servers+=(dnsd); fi
    if wanted aardvark-dns; then servers+=(aardvark-dns); fi
    if wanted dnsmasq; then servers+=(dnsmasq); fi
    [ ${#servers[@]} -gt 0 ] || { echo "dns.sh: no server left to measure (is dnsd there?)" >&2; exit 1; }
    local offered
    if [ "$MODE" = qps ]; then cases=("container 200 0" "container 1000 0" "stranger 200 0")
    elif [ "$MODE" = cpu ]; then cases=("container 200 $FIXED_QPS" "stranger 200 $FIXED_QPS")
    else for offered in ${RATES//,/ }; do cases+=("container 200 $offered"); done; fi
    mkdir -p "$WORK/out"
    : >"$WORK/cases.tsv"
    log "measuring: ${#servers[@]} servers x ${#cases[@]} cases x $RUNS runs x ${DURATION}s" \
        "(~$(( ${#servers[@]} * ${#cases[@]} * RUNS * (DURATION + 1) / 60 + 1)) min)"
    for run in $(seq "$RUNS"); do
        for case in "${cases[@]}"; do
            # rotate which server goes first, so none always runs right after another's load
            read -r client inflight offered <<<"$case"
            for i in $(seq 0 $((${#servers[@]} - 1))); do
                measure "$run" "${servers[(i + run) % ${#servers[@]}]}" "$client" "$inflight" "$offered"
            done
        done
    done
}

report() {
    local stamp title out
    stamp=$(date +%Y%m%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    out=$BENCH_DIR/results/dns-$stamp.txt
    title="DNS benchmark $stamp, mode $MODE"
    if [ "$MODE" = cpu ]; then title+=" (offered rate dnsperf -Q $FIXED_QPS)"; fi
    if [ "$MODE" = sweep ]; then title+=" (offered rates dnsperf -Q ${RATES//,/, } queries/s, 200 in flight)"; fi
    title+=", $RECORDS records ($CONTAINERS containers"
    if [ "$RECORDS" -gt "$CONTAINERS" ]; then title+=", $((RECORDS - CONTAINERS)) more names as their aliases"; fi
    title+="), ${DURATION}s per run, medians of $RUNS runs"
    title+=$'\n'"$(machine_description);"
    title+=" servers pinned to CPU $SERVER_CPU, dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}') to CPU $LOAD_CPU"
    title+=$'\n'"aardvark-dns $("$AARDVARK" version 2>/dev/null | awk -F'"' '/"version"/ {print $4}')"
    title+=", dnsmasq $(dnsmasq --version | awk 'NR==1 {print $3}')"
    title+=$'\n'"$(code_description "$CODE")"
    if [ "$NO_FIREWALL" -eq 1 ]; then title+="; --no-firewall: netcore's nftables table deleted before the runs"; fi
    title+=$'\n'"netcore up of $CONTAINERS containers: $UP_SECONDS s"
    title+="; dnsd RSS after up, before any query: $(awk -v kb="$DNSD_RSS_IDLE" 'BEGIN {printf "%.1f", kb / 1024}') MB"
    python3 "$BENCH_DIR/dns_report.py" "$WORK/cases.tsv" --title "$title" --out "$out"
    RESULT_FILE=$out
}

staleness() {
    [ "$STALENESS" -gt 0 ] || return 0
    log "staleness: $STALENESS netcore run + lookup pairs against dnsd"
    (cd "$CODE" && NETCORE_NETNS=$GWNS NETCORE_STATE_DIR=$STATE PYTHONPATH=$CODE${PYTHONPATH:+:$PYTHONPATH} \
        python3 "$BENCH_DIR/dns_staleness.py" --pairs "$STALENESS" --network "$NETWORK" --server "$GATEWAY" \
        --client-netns "$C0NS" --dnsd-pid "$DNSD_PID" --containers "$CONTAINERS" --records "$RECORDS") | tee -a "$RESULT_FILE"
}

# ---- main ---------------------------------------------------------------------------
main() {
    ensure_packages
    [ "$(nproc)" -ge 2 ] || { SERVER_CPU=0; LOAD_CPU=0; log "one CPU only: server and load generator share it"; }
    log "sandbox $PREFIX*, work dir $WORK"
    create_containers
    if [ "$NO_FIREWALL" -eq 1 ] && ip netns exec "$GWNS" nft list table inet netcore >/dev/null 2>&1; then
        ip netns exec "$GWNS" nft delete table inet netcore  # nothing acts again until the teardown
        log "netcore's firewall table deleted (--no-firewall)"
    fi
    write_peer_configs
    add_peer_addresses
    if wanted aardvark-dns; then start_aardvark; fi
    if wanted dnsmasq; then start_dnsmasq; fi
    find_dnsd  # started by netcore up
    if [ "$SERVE_ONLY" -eq 1 ]; then
        ensure_stranger
        echo "ready c0ns=$C0NS clientns=$CLIENTNS server=$GATEWAY dnsd_pid=$DNSD_PID work=$WORK records=$RECORDS"
        read -r _ || true  # Enter, or the end of input
        return 0
    fi
    run_matrix
    report
    staleness
    log "table written to ${RESULT_FILE#"$REPO"/}"
    if [ "$KEEP" -eq 1 ]; then
        log "--keep: sandbox $PREFIX* stays up (NETCORE_NETNS=$GWNS NETCORE_STATE_DIR=$STATE); Enter tears it down"
        read -r _ || true
    fi
}

main
