# Shell helpers for measuring a server, sourced by bench/dns.sh and bench/dns_scale.sh.
# shellcheck shell=bash

log() { printf '%s %s: %s\n' "$(date +%T)" "${0##*/}" "$*" >&2; }

now() { date +%s.%N; }

# dnsperf's socket buffers (-b, KiB): at 1000 in flight the answers to its opening burst
# overflow the default 208 KiB and dnsperf itself drops them; 4 MiB (the host's
# net.core.rmem_max here, which caps it) leaves the losses to the servers.
# shellcheck disable=SC2034  # used by the scripts that source this file
DNSPERF_BUFFER_KB=4096

# utime+stime of a process (all its threads), in clock ticks: fields 14 and 15 of
# /proc/PID/stat, counted after the ")" that ends the command name.
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    local -a fields
    read -ra fields <<<"$stat"
    echo $((fields[11] + fields[12]))
}

# CPU time of a process (all its threads), in nanoseconds: the scheduler's own account
# (first field of /proc/PID/task/TID/schedstat, CONFIG_SCHED_INFO), exact where the ticks
# of cpu_ticks are 10 ms apart and sampled; those ticks, in nanoseconds, if the kernel keeps
# no such account. Every bench script takes a server's CPU time from here.
cpu_ns() {
    local files=(/proc/"$1"/task/*/schedstat)
    if [ -r "${files[0]}" ]; then
        awk '{ ns += $1 } END { printf "%.0f\n", ns }' "${files[@]}" 2>/dev/null && return 0
    fi
    echo $(( $(cpu_ticks "$1") * (1000000000 / $(getconf CLK_TCK)) ))
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# Busy clock ticks of one CPU from /proc/stat (all but idle and iowait), to show how
# loaded the server's core and the load generator's core were, softirq work included.
cpu_busy_ticks() {
    awk -v cpu="cpu$1" '$1 == cpu { busy = 0; for (i = 2; i <= 9; i++) busy += $i; print busy - $5 - $6 }' /proc/stat
}

# Datagrams a namespace dropped because a socket's receive buffer was full (RcvbufErrors
# of /proc/net/snmp, which is per network namespace): in the gateway namespace those are
# the server's losses, in the client's namespace dnsperf's own.
udp_rcvbuf_errors() {
    # shellcheck disable=SC2016  # an awk program, not a shell expansion
    ip netns exec "$1" awk '/^Udp:/ { if (!n++) { for (i = 2; i <= NF; i++) col[$i] = i } else print $col["RcvbufErrors"] }' \
        /proc/net/snmp
}

# How busy the machine is without us (both CPUs over SECONDS, default 1): other work on
# a 2-core machine skews every number, so each run waits for a quiet moment first.
machine_busy_percent() {
    local before after
    before=$(awk '$1 == "cpu" { busy = 0; for (i = 2; i <= 9; i++) busy += $i; print busy - $5 - $6, busy }' /proc/stat)
    sleep "${1:-1}"
    after=$(awk '$1 == "cpu" { busy = 0; for (i = 2; i <= 9; i++) busy += $i; print busy - $5 - $6, busy }' /proc/stat)
    awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " ");
        print (y[2] > x[2]) ? int(100 * (y[1] - x[1]) / (y[2] - x[2])) : 0 }'
}

QUIET_PERCENT=${QUIET_PERCENT:-10}     # a run starts once the machine is at most this busy...
QUIET_WAIT=${QUIET_WAIT:-120}       # ...or after this many seconds of waiting; the table shows how busy it was
wait_quiet() {
    local waited=0 busy
    busy=$(machine_busy_percent 1)
    while [ "$busy" -gt "$QUIET_PERCENT" ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        [ "$waited" -eq 0 ] && log "machine ${busy}% busy without us: waiting up to ${QUIET_WAIT}s for quiet"
        sleep 4
        waited=$((waited + 5))
        busy=$(machine_busy_percent 1)
    done
    echo "$busy"
}

# For a table's title: the machine, and the code measured.
machine_description() {
    echo "$(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r)"
}
code_description() {  # repo
    local text
    text="code: $(git -C "$1" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ -n "$(git -C "$1" status --porcelain -- netcore dnsd 2>/dev/null || true)" ]; then
        text+=" + uncommitted changes in netcore/ or dnsd/"
    fi
    # dnsd/io/_replay.c (dnsd/_replay.c before issue 25) is built by pip install -e (setup.py); without it dnsd
    # reads through Python's socket calls
    if (cd "$1" && { python3 -c "import dnsd.io._replay" || python3 -c "import dnsd._replay"; } 2>/dev/null); then
        text+="; dnsd's _replay compiled"
    else
        text+="; dnsd's _replay NOT built (pip install -e $1): quiet listeners read through Python's socket calls"
    fi
    echo "$text"
}

# Where Podman's aardvark-dns is (Debian: /usr/lib/podman); empty if nowhere.
find_aardvark() {
    local path
    for path in /usr/libexec/podman/aardvark-dns /usr/lib/podman/aardvark-dns; do
        [ -x "$path" ] && { echo "$path"; return 0; }
    done
    command -v aardvark-dns || true
}

# Stop a process the script started, by its PID: TERM, then KILL after 5 s.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

# Remove a benchmark's netcore sandbox: `netcore purge` (containers, networks, dnsd, the gateway
# namespace), then as a safety net the dnsd of that state dir by the PID it wrote, every namespace
# named PREFIX* and /etc/netns/PREFIX*.
remove_sandbox() {  # prefix gwns state repo
    local prefix=$1 gwns=$2 state=$3 repo=$4 dnsd_pid ns
    [ -d "$state" ] && (cd "$repo" && timeout 300 env NETCORE_NETNS="$gwns" NETCORE_STATE_DIR="$state" \
        PYTHONPATH="$repo" python3 -m netcore purge >/dev/null 2>&1)
    dnsd_pid=$(cat "$state/dnsd.pid" 2>/dev/null) || dnsd_pid=
    if [ -n "$dnsd_pid" ] && tr '\0' ' ' <"/proc/$dnsd_pid/cmdline" 2>/dev/null | grep -qF -- "$state"; then
        stop_pid "$dnsd_pid"
    fi
    for ns in $(ip netns list | awk '{print $1}'); do
        case $ns in "$prefix"*) ip netns delete "$ns" ;; esac
    done
    rm -rf "/etc/netns/$prefix"*
}

# The teardown of bench/dns.sh and bench/cache.sh, by PID and by their prefix only: the processes
# in STARTED_PIDS, then remove_sandbox, /etc/netns if they made it, WORK; exits with the status it
# found. The teardown may start while a command's output is redirected to a file (Ctrl-C during
# `netcore up >up.log`): it goes back to the script's own stdout and stderr (STDOUT_FD, STDERR_FD)
# first. A second Ctrl-C must not cut it short; ignored signals stay ignored in the children too,
# so `netcore purge` finishes.
sandbox_cleanup() {
    local status=$?
    exec 1>&"$STDOUT_FD" 2>&"$STDERR_FD"
    set +e
    trap - EXIT ERR
    trap '' INT TERM
    log "tearing down $PREFIX*"
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
    remove_sandbox "$PREFIX" "$GWNS" "$STATE" "${CODE:-$REPO}"  # CODE: the checkout dns.sh --code measured
    [ "$ETC_NETNS_EXISTED" -eq 1 ] || rmdir /etc/netns 2>/dev/null
    rm -rf "$WORK"
    exit "$status"
}

# The traps of a script: its cleanup function (the argument) runs on exit, failure, Ctrl-C or TERM.
set_traps() {  # cleanup-function
    trap "$1" EXIT
    trap 'log "failed (status $?) at line $LINENO: $BASH_COMMAND"' ERR
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
