#!/usr/bin/env bash
# Browser-to-SIP media benchmark: the largest number of concurrent calls whose leg A is a browser
# (WebRTC: ICE, DTLS-SRTP, rtcp-mux) and whose leg B is plain RTP, 20 ms G.711 (PCMU) both ways,
# held STEP_S seconds with under MAX_LOSS_PCT packets lost in each direction and one-way relay
# delay p99 under MAX_P99_US, for rtpengine (userspace, bridging SRTP<->RTP) and for Dialtone's
# media workers (relay_server `pair-webrtc`: a str0m browser leg bridged to a plain leg), rung by
# rung in the same run, from the same generator (rtpload --webrtc: a str0m browser per call, see
# src/webrtc.rs). Also the set-up cost: at the start of each rung every call does ICE + DTLS at
# once, and the generator counts the handshakes completed per second. Prints both ladders, the
# ratio and WEBRTC_RESULT.
#
#   bench/webrtc.sh                   # both
#   bench/webrtc.sh dialtone          # Dialtone only (or: rtpengine)
#   CALLS="500 1000" STEP_S=20 bench/webrtc.sh
#
# Everything binds to 127.0.0.1 and everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WHICH=${1:-all}

CALLS=${CALLS:-"250 500 1000 1500 2000"}
STEP_S=${STEP_S:-60}                 # counted seconds per rung
WARMUP_S=${WARMUP_S:-2}              # uncounted seconds first
MAX_LOSS_PCT=${MAX_LOSS_PCT:-0.1}    # per direction
MAX_P99_US=${MAX_P99_US:-2000}
SOCKETS=${SOCKETS:-2}                # plain (leg B) sockets: a sender and a receiver thread each
BROWSER_THREADS=${BROWSER_THREADS:-2} # browser threads, one socket each
SETTLE_S=${SETTLE_S:-2}
BENCH_PRIO=${BENCH_PRIO:-}
# The relay under test first, as in relay.sh (see there): as root, the relay runs SCHED_FIFO and
# the generator at normal priority. RELAY_PRIO= (empty) turns it off.
if [ -z "${RELAY_PRIO+set}" ]; then
    RELAY_PRIO=
    if [ "$(id -u)" -eq 0 ] && command -v chrt >/dev/null; then RELAY_PRIO="chrt -f 10"; fi
fi
# Extra rtpload options, e.g. RTPLOAD_EXTRA=--browser-twcc.
RTPLOAD_EXTRA=${RTPLOAD_EXTRA:-}

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
STR0MCOST=${STR0MCOST:-$HERE/target/release/str0mcost}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/webrtc-$STAMP}
mkdir -p "$OUT"
echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), BENCH_PRIO=${BENCH_PRIO:-none}, RELAY_PRIO=${RELAY_PRIO:-none}, RTPLOAD_EXTRA=${RTPLOAD_EXTRA:-none}" | tee "$OUT/summary.txt"

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

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

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
        (cd "$HERE" && CARGO_TARGET_DIR="$HERE/target" cargo build --release --bin rtpload --bin str0mcost >/dev/null)
    fi
    if [ -z "${RELAY_SERVER_PREBUILT:-}" ] && [[ $WHICH != rtpengine ]]; then
        (cd "$ROOT" && cargo build --release -p node --example relay_server >/dev/null)
    fi
}

wait_port() { # wait_port udp|tcp PORT
    local flag=-Huln
    [ "$1" = tcp ] && flag=-Htln
    for _ in $(seq 1 50); do
        ss "$flag" "sport = :$2" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

start_relay() { # start_relay TARGET LOG -> sets RELAY_PID
    local target=$1 log=$2
    if [ "$target" = rtpengine ]; then
        # Userspace forwarding as in relay.sh; the DTLS certificate's key is P-256 ECDSA, as
        # str0m's (Dialtone's) is. Log level 4: warnings, no line per call.
        $BENCH_PRIO $RELAY_PRIO rtpengine --config-file=none --table=-1 --foreground --log-stderr --log-level=4 \
            --interface=127.0.0.1 --listen-ng="$NG" --port-min="$RTPE_PORT_MIN" \
            --port-max="$RTPE_PORT_MAX" --num-threads="$RTPE_THREADS" --timeout=600 \
            --dtls-cert-cipher=prime256v1 >"$log" 2>&1 &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        wait_port udp "${NG##*:}" || { echo "rtpengine did not start, see $log" >&2; exit 1; }
    else
        $BENCH_PRIO $RELAY_PRIO "$RELAY_SERVER" --control "$CONTROL" --ports "$DT_PORTS" >"$log" 2>&1 &
        RELAY_PID=$!
        PIDS+=("$RELAY_PID")
        wait_port tcp "${CONTROL##*:}" || { echo "relay_server did not start, see $log" >&2; exit 1; }
    fi
}

# run_rung TARGET CALLS -> sets LINE to the RTPLOAD_RESULT line (empty on a crash); 0 = pass.
run_rung() {
    local target=$1 calls=$2
    local log="$OUT/$target-$calls"
    LOAD_AT_START=$(cut -d' ' -f1 /proc/loadavg)
    start_relay "$target" "$log.relay.log"
    top -b -d 5 -n $(((STEP_S + WARMUP_S) / 5 + 6)) >"$log.top.txt" 2>/dev/null &
    local top_pid=$!
    PIDS+=("$top_pid")
    local result=""
    # shellcheck disable=SC2086
    if $BENCH_PRIO "$RTPLOAD" --webrtc --target "$target" --control "$CONTROL" --ng "$NG" --calls "$calls" \
        --seconds "$STEP_S" --warmup "$WARMUP_S" --sockets "$SOCKETS" --browser-threads "$BROWSER_THREADS" \
        --local-base "$LOCAL_BASE" --relay-pid "$RELAY_PID" \
        --max-loss-pct "$MAX_LOSS_PCT" --max-p99-us "$MAX_P99_US" $RTPLOAD_EXTRA >"$log.rtpload.txt" 2>&1; then
        result=$(grep '^RTPLOAD_RESULT' "$log.rtpload.txt" || true)
    fi
    kill "$top_pid" 2>/dev/null || true
    cleanup
    sleep "$SETTLE_S"
    LINE=$result
    [[ $result == *pass=1* ]]
}

field() { # field LINE KEY
    sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"
}

verdict_of() { # verdict_of LINE -> pass, or FAIL with the reasons
    local line=$1 reasons=()
    [[ $line == *pass=1* ]] && { echo pass; return; }
    [ "$(field "$line" connected)" != "$(field "$line" calls)" ] && reasons+=("$(field "$line" connected) connected")
    [ "$(field "$line" behind)" = 1 ] && reasons+=("generator fell behind, $(field "$line" gen_late_max_ms) ms late")
    awk -v a="$(field "$line" a2b_loss_pct)" -v m="$MAX_LOSS_PCT" 'BEGIN { exit !(a >= m) }' && reasons+=("loss browser->SIP")
    awk -v a="$(field "$line" b2a_loss_pct)" -v m="$MAX_LOSS_PCT" 'BEGIN { exit !(a >= m) }' && reasons+=("loss SIP->browser")
    [ "$(field "$line" p99_us)" -ge "$MAX_P99_US" ] && reasons+=("p99")
    local IFS=,
    echo "FAIL (${reasons[*]})"
}

# How fast this machine is right now: str0m's cost per packet with one session (all in the
# CPU's caches), before and after the ladders. On a shared host the same binary measured 1.06 us
# a send on a quiet hour and twice that on a busy one; compare runs only at similar speeds.
machine_check() {
    [ -x "$STR0MCOST" ] || return 0
    local line
    line=$("$STR0MCOST" 1 100000 | grep '^STR0MCOST_RESULT' || true)
    echo "machine check ($1): str0m, one session: send $(field "$line" send_us) us, receive $(field "$line" receive_us) us a packet" | tee -a "$OUT/summary.txt"
}

build
machine_check before
declare -A BEST=([rtpengine]=0 [dialtone]=0)
declare -A DONE=([rtpengine]=0 [dialtone]=0)
declare -A HS=([rtpengine]=0 [dialtone]=0)
TARGETS=(rtpengine dialtone)
case $WHICH in
    all) ;;
    rtpengine) TARGETS=(rtpengine) ;;
    dialtone) TARGETS=(dialtone) ;;
    *) echo "usage: $0 [all|rtpengine|dialtone]" >&2; exit 2 ;;
esac

FMT='%-10s %6s %5s %7s %7s %6s %10s %9s %9s %7s %7s %8s %5s %5s %5s  %s\n'
printf "$FMT" target calls load dtls/s best_s hs_ms sent a2b_loss% b2a_loss% p50_us p99_us max_us relay gen brows result | tee -a "$OUT/summary.txt"
for calls in $CALLS; do
    for target in "${TARGETS[@]}"; do
        [ "${DONE[$target]}" = 1 ] && continue
        run_rung "$target" "$calls" || true
        line=$LINE
        if [ -z "$(field "$line" sent)" ]; then
            printf '%-10s %6s %5s  generator failed, see %s\n' "$target" "$calls" "$LOAD_AT_START" "$OUT/$target-$calls.rtpload.txt" | tee -a "$OUT/summary.txt"
            DONE[$target]=1
            continue
        fi
        verdict=$(verdict_of "$line")
        printf "$FMT" "$target" "$calls" "$LOAD_AT_START" "$(field "$line" dtls_hs_per_s)" "$(field "$line" dtls_peak_per_s)" "$(field "$line" hs_relay_cpu_ms)" \
            "$(field "$line" sent)" "$(field "$line" a2b_loss_pct)" "$(field "$line" b2a_loss_pct)" \
            "$(field "$line" p50_us)" "$(field "$line" p99_us)" "$(field "$line" max_us)" \
            "$(field "$line" relay_window_cpu_pct)" "$(field "$line" gen_cpu_pct)" "$(field "$line" gen_browser_cpu_pct)" \
            "$verdict" | tee -a "$OUT/summary.txt"
        hs=$(field "$line" dtls_hs_per_s)
        [ "$(field "$line" connected)" = "$calls" ] && [ "${hs:-0}" -gt "${HS[$target]}" ] && HS[$target]=$hs
        if [ "$verdict" = pass ]; then BEST[$target]=$calls; else DONE[$target]=1; fi
    done
done
echo "(dtls/s: ICE + DTLS handshakes completed per second over the set-up burst, every call at once; best_s: the most in one second; hs_ms: relay CPU ms per handshake;" \
    "loss per direction; relay, gen, brows: CPU % of one core over the counted window, relay, whole generator, its browser threads)" | tee -a "$OUT/summary.txt"

machine_check after
r=${BEST[rtpengine]} d=${BEST[dialtone]}
ratio=$(awk -v d="$d" -v r="$r" 'BEGIN { if (r > 0) printf "%.2f", d / r; else if (d > 0) print "inf"; else print "-" }')
[ ${#TARGETS[@]} -lt 2 ] && ratio=-
echo "rtpengine (userspace, SRTP<->RTP): $r calls; Dialtone: $d calls; ratio dialtone/rtpengine $ratio;" \
    "DTLS handshakes per second: Dialtone ${HS[dialtone]}, rtpengine ${HS[rtpengine]}" | tee -a "$OUT/summary.txt"
echo "WEBRTC_RESULT rtpengine_calls=$r dialtone_calls=$d ratio=$ratio dtls_handshakes_per_s=${HS[dialtone]} rtpengine_dtls_handshakes_per_s=${HS[rtpengine]}" | tee -a "$OUT/summary.txt"
echo "logs: $OUT"
