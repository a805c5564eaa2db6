#!/usr/bin/env bash
# Media relay benchmark: the largest number of bridged G.711 calls (20 ms RTP both ways) held
# for STEP_S seconds with under MAX_LOSS_PCT packets lost and one-way relay delay p99 under
# MAX_P99_US, for rtpengine (userspace forwarding, no kernel module) and for Dialtone's media
# workers (crates/node/examples/relay_server.rs), rung by rung in the same run, from the same
# generator (rtpload). Prints both, the ratio and RELAY_RESULT. After the Dialtone ladder, a
# cross-worker ladder (APART_CALLS, default CALLS): each call's legs allocated on two different
# media workers and then bridged (relay_server `pair-apart`: the bridge moves leg A to leg B's
# worker), reported as "dt-apart" beside the same-worker figures, with RELAY_APART_RESULT.
#
#   bench/relay.sh                    # both, then Dialtone cross-worker
#   bench/relay.sh dialtone           # Dialtone only, same-worker then cross-worker (or: rtpengine)
#   bench/relay.sh apart              # Dialtone cross-worker only
#   CALLS="500 1000" STEP_S=20 bench/relay.sh
#   APART_CALLS="1000 2000" bench/relay.sh dialtone    # APART_CALLS= (empty): no cross-worker
#
# Everything binds to 127.0.0.1 and everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WHICH=${1:-all}

CALLS=${CALLS:-"500 1000 2000 3000 4000"}
APART_CALLS=${APART_CALLS-$CALLS}    # cross-worker rungs (empty: none)
STEP_S=${STEP_S:-60}                 # counted seconds per rung
WARMUP_S=${WARMUP_S:-2}              # uncounted seconds first
MAX_LOSS_PCT=${MAX_LOSS_PCT:-0.1}
MAX_P99_US=${MAX_P99_US:-2000}
SOCKETS=${SOCKETS:-2}                # rtpload sockets (a sender and a receiver thread each)
SETTLE_S=${SETTLE_S:-2}
# A scheduling prefix for the relays and the generator, e.g. BENCH_PRIO="chrt -f 10" (root).
BENCH_PRIO=${BENCH_PRIO:-}
# A scheduling prefix for the relay under test only (rtpengine and Dialtone alike). By default,
# as root, the relay runs SCHED_FIFO and the generator at normal priority: on two cores shared
# with its own load generator, a relay whose packets wait behind the generator's threads for a
# time slice measures the scheduler, not the relay (2,000 calls at equal priority: 0 lost but
# p99 59 ms; with the relay first: p99 0.9 ms). On its own machine a relay has the cores to
# itself. The generator's lateness does not count as delay: each packet is stamped when built
# and received with the kernel's timestamp. RELAY_PRIO= (empty) turns it off.
if [ -z "${RELAY_PRIO+set}" ]; then
    RELAY_PRIO=
    if [ "$(id -u)" -eq 0 ] && command -v chrt >/dev/null; then RELAY_PRIO="chrt -f 10"; fi
fi

CONTROL=${CONTROL:-127.0.0.1:17070}
NG=${NG:-127.0.0.1:22222}
DT_PORTS=${DT_PORTS:-20000-39999}
RTPE_PORT_MIN=${RTPE_PORT_MIN:-40000}
RTPE_PORT_MAX=${RTPE_PORT_MAX:-59999}
RTPE_THREADS=${RTPE_THREADS:-$(nproc)}
LOCAL_BASE=${LOCAL_BASE:-61000}

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELAY_SERVER=${RELAY_SERVER:-$TARGET_DIR/release/examples/relay_server}
RTPLOAD=${RTPLOAD:-$HERE/target/release/rtpload}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/relay-$STAMP}
mkdir -p "$OUT"
echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), BENCH_PRIO=${BENCH_PRIO:-none}, RELAY_PRIO=${RELAY_PRIO:-none}" >"$OUT/summary.txt"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 4000 calls are 8000 Dialtone streams of two sockets each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# rtpengine (the reference) from Debian's rtpengine-daemon, installed as root when missing; its
# packaged service is stopped, this script starts its own on loopback.
need_rtpengine() {
    command -v rtpengine >/dev/null && return 0
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rtpengine-daemon >/dev/null
        systemctl stop rtpengine-daemon 2>/dev/null || true
    fi
    command -v rtpengine >/dev/null || { echo "rtpengine is missing: apt-get install rtpengine-daemon" >&2; exit 1; }
}
if [[ $WHICH == all || $WHICH == rtpengine ]]; then need_rtpengine; fi

build() {
    if [ -z "${RTPLOAD_PREBUILT:-}" ]; then
        (cd "$HERE" && cargo build --release --bin rtpload >/dev/null)
    fi
    if [ -z "${RELAY_SERVER_PREBUILT:-}" ] && [[ $WHICH != rtpengine ]]; then
        (cd "$ROOT" && cargo build --release -p node --example relay_server >/dev/null)
    fi
}

wait_udp_port() { # wait until something listens on a UDP port
    local port=$1
    for _ in $(seq 1 50); do
        ss -Huln "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

wait_tcp_port() {
    local port=$1
    for _ in $(seq 1 50); do
        ss -Htln "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

cpu_seconds() { # user+system CPU seconds of a process so far
    awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

start_relay() { # start_relay TARGET LOG -> sets RELAY_PID
    local target=$1 log=$2
    if [ "$target" = rtpengine ]; then
        $BENCH_PRIO $RELAY_PRIO rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=4 \
            --interface=127.0.0.1 --listen-ng="$NG" --port-min="$RTPE_PORT_MIN" \
            --port-max="$RTPE_PORT_MAX" --num-threads="$RTPE_THREADS" --timeout=600 >"$log" 2>&1 &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        wait_udp_port "${NG##*:}" || { echo "rtpengine did not start, see $log" >&2; exit 1; }
    else
        $BENCH_PRIO $RELAY_PRIO "$RELAY_SERVER" --control "$CONTROL" --ports "$DT_PORTS" >"$log" 2>&1 &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        wait_tcp_port "${CONTROL##*:}" || { echo "relay_server did not start, see $log" >&2; exit 1; }
    fi
}

# run_rung TARGET CALLS [LABEL] -> sets LINE to the RTPLOAD_RESULT line (no sent= on a crash);
# 0 = pass. LABEL dt-apart: Dialtone with rtpload --apart (legs on different workers).
run_rung() {
    local target=$1 calls=$2 label=${3:-$1}
    local log="$OUT/$label-$calls"
    local extra=()
    [ "$label" = dt-apart ] && extra=(--apart)
    start_relay "$target" "$log.relay.log"
    local before after
    before=$(cpu_seconds "$RELAY_PID")
    top -b -d 5 -n $(((STEP_S + WARMUP_S) / 5 + 4)) >"$log.top.txt" 2>/dev/null &
    local top_pid=$!
    PIDS+=("$top_pid")
    local result=""
    local t0=$SECONDS
    if $BENCH_PRIO "$RTPLOAD" --target "$target" --control "$CONTROL" --ng "$NG" --calls "$calls" \
        --seconds "$STEP_S" --warmup "$WARMUP_S" --sockets "$SOCKETS" --local-base "$LOCAL_BASE" \
        --max-loss-pct "$MAX_LOSS_PCT" --max-p99-us "$MAX_P99_US" ${extra[@]+"${extra[@]}"} >"$log.rtpload.txt" 2>&1; then
        result=$(grep '^RTPLOAD_RESULT' "$log.rtpload.txt" || true)
    fi
    after=$(cpu_seconds "$RELAY_PID")
    local cpu
    cpu=$(awk -v a="$after" -v b="$before" -v t=$((SECONDS - t0)) 'BEGIN { if (t > 0) printf "%.0f", (a - b) * 100 / t; else print 0 }')
    kill "$top_pid" 2>/dev/null || true
    cleanup
    sleep "$SETTLE_S"
    LINE="$result relay_cpu_pct=$cpu"
    [[ $result == *pass=1* ]]
}

field() { # field LINE KEY
    sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"
}

build
declare -A BEST=([rtpengine]=0 [dialtone]=0)
declare -A DONE=([rtpengine]=0 [dialtone]=0)
TARGETS=(rtpengine dialtone)
APART=1
case $WHICH in
    all) ;;
    rtpengine) TARGETS=(rtpengine); APART=0 ;;
    dialtone) TARGETS=(dialtone) ;;
    apart) TARGETS=() ;;
    *) echo "usage: $0 [all|rtpengine|dialtone|apart]" >&2; exit 2 ;;
esac
[ -z "$APART_CALLS" ] && APART=0

printf '%-10s %6s %10s %9s %8s %8s %8s %6s  %s\n' target calls sent loss% p50_us p99_us max_us cpu% result | tee -a "$OUT/summary.txt"
for calls in $CALLS; do
    for target in ${TARGETS[@]+"${TARGETS[@]}"}; do
        [ "${DONE[$target]}" = 1 ] && continue
        if run_rung "$target" "$calls"; then verdict=pass; else verdict=FAIL; fi
        line=$LINE
        # The relay took so much CPU that the generator could not send what was due.
        [ "$(field "$line" behind)" = 1 ] && verdict="FAIL (generator fell behind: $(field "$line" offered) due)"
        if [ -z "$(field "$line" sent)" ]; then
            printf '%-10s %6s  generator failed, see %s\n' "$target" "$calls" "$OUT/$target-$calls.rtpload.txt" | tee -a "$OUT/summary.txt"
            DONE[$target]=1
            continue
        fi
        printf '%-10s %6s %10s %9s %8s %8s %8s %6s  %s\n' "$target" "$calls" "$(field "$line" sent)" \
            "$(field "$line" loss_pct)" "$(field "$line" p50_us)" "$(field "$line" p99_us)" \
            "$(field "$line" max_us)" "$(field "$line" relay_cpu_pct)" "$verdict" | tee -a "$OUT/summary.txt"
        if [ "$verdict" = pass ]; then BEST[$target]=$calls; else DONE[$target]=1; fi
    done
done

# Cross-worker: the same generator and relay build, each call's legs placed on two workers and
# bridged across them (leg A moves to leg B's worker).
BEST_APART=0
if [ "$APART" = 1 ]; then
    for calls in $APART_CALLS; do
        if run_rung dialtone "$calls" dt-apart; then verdict=pass; else verdict=FAIL; fi
        line=$LINE
        [ "$(field "$line" behind)" = 1 ] && verdict="FAIL (generator fell behind: $(field "$line" offered) due)"
        if [ -z "$(field "$line" sent)" ]; then
            printf '%-10s %6s  generator failed, see %s\n' dt-apart "$calls" "$OUT/dt-apart-$calls.rtpload.txt" | tee -a "$OUT/summary.txt"
            break
        fi
        printf '%-10s %6s %10s %9s %8s %8s %8s %6s  %s\n' dt-apart "$calls" "$(field "$line" sent)" \
            "$(field "$line" loss_pct)" "$(field "$line" p50_us)" "$(field "$line" p99_us)" \
            "$(field "$line" max_us)" "$(field "$line" relay_cpu_pct)" "$verdict" | tee -a "$OUT/summary.txt"
        if [ "$verdict" = pass ]; then BEST_APART=$calls; else break; fi
    done
fi

r=${BEST[rtpengine]} d=${BEST[dialtone]}
if [ ${#TARGETS[@]} -gt 0 ]; then
    ratio=$(awk -v d="$d" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", d / r; else print "inf" }')
    echo "rtpengine (userspace): $r calls; Dialtone: $d calls; ratio dialtone/rtpengine $ratio" | tee -a "$OUT/summary.txt"
    echo "RELAY_RESULT rtpengine_calls=$r dialtone_calls=$d ratio=$ratio" | tee -a "$OUT/summary.txt"
fi
if [ "$APART" = 1 ]; then
    same=$d
    [[ " ${TARGETS[*]-} " == *" dialtone "* ]] || same=-    # not run
    echo "Dialtone cross-worker bridges (pair-apart): $BEST_APART calls; same-worker (pair): $same calls" | tee -a "$OUT/summary.txt"
    echo "RELAY_APART_RESULT dialtone_calls=$same dialtone_apart_calls=$BEST_APART" | tee -a "$OUT/summary.txt"
fi
echo "logs: $OUT"
