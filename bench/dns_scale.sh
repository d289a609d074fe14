#!/usr/bin/env bash
# Scale: dnsd's throughput with many records against few, measured side by side (issue 4).
#
#   sudo bench/dns_scale.sh [--small N] [--large N] [--seconds S] [--runs R] [--inflight Q]
#
# Builds two sandboxes at once with `bench/dns.sh --serve-only --servers dnsd` (one with
# --small records, default 100, one with --large, default 10,000; each in its own namespaces
# with its own prefix, torn down by dns.sh itself), then alternates dnsperf runs between
# them: small, large, then large, small in the next run, for a container client and a
# stranger client. Run-to-run drift of the machine (this one drifts by 15-25% over minutes)
# hits both sizes alike, so the ratio large/small of each run is what the table's median
# is taken of. dnsd runs pinned to CPU 0 (both, the idle one asleep), dnsperf to CPU 1.
# The table goes to stdout and bench/results/dns-scale-<timestamp>.txt.
set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR")
# shellcheck source=bench/measure.sh
source "$BENCH_DIR/measure.sh"

SMALL=100
LARGE=10000
DURATION=10
RUNS=3
INFLIGHT=200
LOAD_CPU=1

usage() { sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case $1 in
        --small) SMALL=$2; shift 2 ;;
        --large) LARGE=$2; shift 2 ;;
        --seconds) DURATION=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --inflight) INFLIGHT=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "dns_scale.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for value in "$SMALL" "$LARGE" "$DURATION" "$RUNS" "$INFLIGHT"; do
    [[ $value =~ ^[0-9]+$ ]] || { echo "dns_scale.sh: not a number: $value" >&2; exit 2; }
done
if [ "$SMALL" -lt 3 ] || [ "$LARGE" -lt 3 ] || [ "$RUNS" -lt 1 ] || [ "$DURATION" -lt 1 ] || [ "$INFLIGHT" -lt 1 ]; then
    echo "dns_scale.sh: need --small and --large >= 3, --runs, --seconds and --inflight >= 1" >&2; exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "dns_scale.sh: run as root (dns.sh creates network namespaces)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || LOAD_CPU=0

WORK=$(mktemp -d /tmp/ncbscale.XXXXXX)
declare -A SANDBOX_PID SANDBOX_FD C0NS CLIENTNS SERVER DNSD_PID QUERIES

# Each sandbox's dns.sh reads its stdin from a FIFO we hold open: a line on it, or our exit
# (which closes it), makes dns.sh tear its sandbox down.
cleanup() {
    local status=$? size
    set +e
    trap - EXIT ERR
    trap '' INT TERM
    for size in "${!SANDBOX_FD[@]}"; do echo >&"${SANDBOX_FD[$size]}"; done
    for size in "${!SANDBOX_PID[@]}"; do
        log "waiting for the $size-record sandbox to be torn down"
        wait "${SANDBOX_PID[$size]}"
    done
    rm -rf "$WORK"
    exit "$status"
}
set_traps cleanup

start_sandbox() {  # records
    local size=$1 fd line key value
    mkfifo "$WORK/in-$size"
    exec {fd}<>"$WORK/in-$size"   # read-write: opening does not wait for a reader
    SANDBOX_FD[$size]=$fd
    log "building the $size-record sandbox (log: $WORK/log-$size)"
    bash "$BENCH_DIR/dns.sh" --records "$size" --servers dnsd --staleness 0 --serve-only \
        <"$WORK/in-$size" >"$WORK/ready-$size" 2>"$WORK/log-$size" &
    SANDBOX_PID[$size]=$!
    until line=$(grep -m1 '^ready ' "$WORK/ready-$size"); do
        kill -0 "${SANDBOX_PID[$size]}" 2>/dev/null || {
            echo "dns_scale.sh: dns.sh --records $size failed: $(tail -3 "$WORK/log-$size")" >&2; exit 1; }
        sleep 1
    done
    for pair in ${line#ready }; do
        key=${pair%%=*} value=${pair#*=}
        case $key in
            c0ns) C0NS[$size]=$value ;;
            clientns) CLIENTNS[$size]=$value ;;
            server) SERVER[$size]=$value ;;
            dnsd_pid) DNSD_PID[$size]=$value ;;
            work) QUERIES[$size]=$value/queries.txt ;;
        esac
    done
    log "$size records: $(grep -m1 'netcore up:.*containers in' "$WORK/log-$size" | sed 's/.*netcore up: //')"
}

measure() {  # run records client
    local run=$1 size=$2 client=$3 ns pid before after background out
    if [ "$client" = stranger ]; then ns=${CLIENTNS[$size]}; else ns=${C0NS[$size]}; fi
    pid=${DNSD_PID[$size]}
    out=$WORK/out-$run-$size-$client.txt
    kill -0 "$pid" 2>/dev/null || { echo "dns_scale.sh: dnsd of the $size-record sandbox (PID $pid) is gone" >&2; exit 1; }
    background=$(wait_quiet)
    before=$(cpu_ns "$pid")
    timeout $((DURATION + 60)) ip netns exec "$ns" taskset -c "$LOAD_CPU" \
        dnsperf -s "${SERVER[$size]}" -d "${QUERIES[$size]}" -l "$DURATION" -q "$INFLIGHT" -b "$DNSPERF_BUFFER_KB" \
        >"$out" 2>&1 || { echo "dns_scale.sh: dnsperf failed: $(tail -3 "$out")" >&2; exit 1; }
    after=$(cpu_ns "$pid")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$size" "$client" $((after - before)) 1000000000 \
        "$background" "$out" >>"$WORK/cases.tsv"
    log "run $run/$RUNS $size records, $client: $(awk '/Queries per second/ {print $4}' "$out") QPS"
}

main() {
    start_sandbox "$SMALL"
    start_sandbox "$LARGE"
    : >"$WORK/cases.tsv"
    local run client sizes size stamp out title
    log "measuring: 2 sizes x 2 clients x $RUNS runs x ${DURATION}s"
    for run in $(seq "$RUNS"); do
        for client in container stranger; do
            if [ $((run % 2)) -eq 1 ]; then sizes=("$SMALL" "$LARGE"); else sizes=("$LARGE" "$SMALL"); fi
            for size in "${sizes[@]}"; do measure "$run" "$size" "$client"; done
        done
    done
    stamp=$(date +%Y%m%d-%H%M%S)
    mkdir -p "$BENCH_DIR/results"
    out=$BENCH_DIR/results/dns-scale-$stamp.txt
    title="dnsd scale $stamp: $SMALL against $LARGE records, runs alternating between the two sandboxes,"
    title+=" ${DURATION}s per run, $INFLIGHT in flight, medians of $RUNS runs"
    title+=$'\n'"$(machine_description);"
    title+=" dnsd pinned to CPU 0, dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}') to CPU $LOAD_CPU"
    title+=$'\n'"$(code_description "$REPO")"
    python3 "$BENCH_DIR/dns_scale_report.py" "$WORK/cases.tsv" --small "$SMALL" --large "$LARGE" \
        --title "$title" --out "$out"
    log "table written to ${out#"$REPO"/}"
}

main
