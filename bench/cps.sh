#!/usr/bin/env bash
# Call-rate benchmark: the highest rate of full calls (INVITE, 200, ACK, hold, BYE, 200) that
# completes with no failed call and p99 set-up under P99_LIMIT_MS, for Kamailio (stateful proxy
# in front of a UAS: the stateless Kamailio UAS or a SIPp UAS) and for Dialtone answering
# <Response><Pause length="HOLD"/></Response> from a local webhook, each measured by two
# generators: our own sipload and SIPp (an independent one). Then the goodput at 2x and 3x each
# side's clean rate. Prints one CPS_SIDE line per side+generator+hold and one CPS_RESULT line
# (the ratio dialtone/kamailio) per generator+hold.
#
#   bench/cps.sh                 # both sides, both generators, hold 1 s and 2 s
#   bench/cps.sh kamailio        # one side only (or: dialtone)
#   GEN=sipp HOLD_MS=1000 RATES="200 400" STEP_S=3 bench/cps.sh
#
# Everything runs on 127.0.0.1 and everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WHICH=${1:-all}

GEN=${GEN:-both}                     # sipload | sipp | both
RATES=${RATES:-"500 1000 1500 2000 2500 3000 3500 4000 4500 5000"}
STEP_S=${STEP_S:-10}                 # seconds of calls per rung
HOLD_MS=${HOLD_MS:-"1000 2000"}      # one or more holds; Dialtone's <Pause> is HOLD_MS/1000 s
GOODPUT=${GOODPUT-"2 3"}             # multiples of the clean rate measured for goodput (empty: none)
P99_LIMIT_MS=${P99_LIMIT_MS:-20}
TIMEOUT_MS=${TIMEOUT_MS:-5000}       # how long a generator waits for a final answer
SETTLE_S=${SETTLE_S:-3}              # pause between rungs so lingering transactions expire
SOCKETS=${SOCKETS:-1}                # sipload sockets/threads
# The UAS behind the Kamailio proxy: sipp (sipp/uas.xml), kamailio (kamailio/uas.cfg,
# stateless) or both (two ladders; the Kamailio result is the better of the two). The SIPp UAS
# costs ~45 CPU-us a call against ~110-150 for the Kamailio one (its timer processes), which
# leaves the proxy more of the 2 cores here: it is the higher ceiling.
KAM_UAS=${KAM_UAS:-sipp}
# Proxy UDP workers (kamailio -n). One worker saturates its core at ~2,700 CPS (~350 us a call);
# two put the proxy on both cores.
KAM_CHILDREN=${KAM_CHILDREN:-2}
KAM_SHM_MB=${KAM_SHM_MB:-1024}       # kamailio -m, per instance
KAM_PKG_MB=${KAM_PKG_MB:-64}         # kamailio -M, per process
KAM_RCVBUF=${KAM_RCVBUF:-}           # kamailio -b (UDP receive buffer ceiling); empty: default
KAM_EXTRA=${KAM_EXTRA:-}             # more kamailio arguments, e.g. -A 'TM_WT_TIMER=2000'
SIPP=${SIPP:-sipp}
SIPP_TRANSPORT=${SIPP_TRANSPORT:-u1} # u1: one UDP socket; un: one per call (see SIPP_MAX_SOCKET)
SIPP_MAX_SOCKET=${SIPP_MAX_SOCKET:-}
SIPP_BUFF=${SIPP_BUFF:-4194304}      # SIPp -buff_size (its default, 64 KB, drops datagrams)
SIPP_LIMIT=${SIPP_LIMIT:-}           # SIPp -l; empty: rate * (hold + timeout + 2 s), never limiting
SIPP_EXTRA=${SIPP_EXTRA:-}           # more sipp UAC arguments
# Before each ladder, wait (at most QUIET_WAIT_S s, polling every 10 s) for the 1-minute load
# average to fall under QUIET_LOAD; 0: do not wait. The load average is logged with every rung.
QUIET_LOAD=${QUIET_LOAD:-1.0}
QUIET_WAIT_S=${QUIET_WAIT_S:-0}
# On a shared machine, a scheduling prefix for the servers and the generator so the figures
# measure them and not the neighbours, e.g. BENCH_PRIO="nice -n -19" or BENCH_PRIO="chrt -f 10"
# (both need root). Empty: normal priority.
BENCH_PRIO=${BENCH_PRIO:-}

PROXY_PORT=${PROXY_PORT:-15060}
UAS_PORT=${UAS_PORT:-15090}
SIPP_PORT=${SIPP_PORT:-15070}
DT_SIP_PORT=${DT_SIP_PORT:-15080}
DT_HTTP_PORT=${DT_HTTP_PORT:-18080}
WEBHOOK_PORT=${WEBHOOK_PORT:-18088}
DT_RTP_PORTS=${DT_RTP_PORTS:-20000-39999}
NUMBER=${NUMBER:-+15550001000}
ACCOUNT_SID=${ACCOUNT_SID:-AC0123456789abcdef0123456789abcdef}
AUTH_TOKEN=${AUTH_TOKEN:-benchbenchbenchbenchbenchbench12}

case $GEN in sipload) GENS=sipload ;; sipp) GENS=sipp ;; both) GENS="sipload sipp" ;;
    *) echo "GEN must be sipload, sipp or both" >&2; exit 2 ;; esac
case $KAM_UAS in kamailio) UASES=kamailio ;; sipp) UASES=sipp ;; both) UASES="kamailio sipp" ;;
    *) echo "KAM_UAS must be kamailio, sipp or both" >&2; exit 2 ;; esac

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/$STAMP}
mkdir -p "$OUT"
{
    echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), BENCH_PRIO=${BENCH_PRIO:-none}"
    echo "# GEN=$GEN RATES=\"$RATES\" STEP_S=$STEP_S HOLD_MS=\"$HOLD_MS\" GOODPUT=\"$GOODPUT\" KAM_UAS=$KAM_UAS KAM_CHILDREN=$KAM_CHILDREN KAM_SHM_MB=$KAM_SHM_MB KAM_PKG_MB=$KAM_PKG_MB KAM_RCVBUF=${KAM_RCVBUF:-default} SIPP_TRANSPORT=$SIPP_TRANSPORT SIPP_BUFF=$SIPP_BUFF SOCKETS=$SOCKETS rmem_max=$(cat /proc/sys/net/core/rmem_max)"
} >"$OUT/summary.txt"

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        # bounded: a process that ignores TERM for 5 s gets KILL
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[cps] $*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' '/'; }

# shellcheck disable=SC2206 # word splitting of the prefix is intended
RUN=($BENCH_PRIO)

# --- the generators -------------------------------------------------------------------------
# sipload is also the webhook server, so it is needed for Dialtone whatever GEN says.
BENCH_TARGET=${BENCH_TARGET:-${CARGO_TARGET_DIR:-$HERE/target}}
SIPLOAD=${SIPLOAD:-$BENCH_TARGET/release/sipload}
if [ ! -x "$SIPLOAD" ]; then
    CARGO_TARGET_DIR=$BENCH_TARGET cargo build --quiet --release --locked --manifest-path "$HERE/Cargo.toml"
fi
if [[ " $GENS " == *" sipp "* ]] || [[ " $UASES " == *" sipp "* ]]; then
    command -v "$SIPP" >/dev/null || { log "sipp not installed (apt-get install -y sip-tester)"; exit 1; }
fi
CLK_TCK=$(getconf CLK_TCK)

result_field() { # LINE KEY
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1
}

wait_udp() { # PORT: bounded wait for a UDP listener
    for _ in $(seq 1 50); do
        ss -Hlun "sport = :$1" | grep -q . && return 0
        sleep 0.2
    done
    return 1
}

wait_quiet() {
    [ "$QUIET_WAIT_S" -gt 0 ] || return 0
    local waited=0
    while ! awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l < q) }'; do
        if [ "$waited" -ge "$QUIET_WAIT_S" ]; then
            log "load average still $(loadavg) after ${waited}s; going on"
            return 0
        fi
        sleep 10
        waited=$((waited + 10))
    done
}

# utime+stime (clock ticks) of the given pids, all threads
cpu_ticks() {
    local files=() p
    for p in "$@"; do [ -r "/proc/$p/stat" ] && files+=("/proc/$p/stat"); done
    [ "${#files[@]}" -gt 0 ] || { echo 0; return; }
    awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }' "${files[@]}" 2>/dev/null
}
# CPU of this shell's reaped children (the generator runs in the foreground and is reaped)
child_ticks() { awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"; }
udp_counter() { # NAME from the Udp: lines of /proc/net/snmp
    awk -v k="$1" '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == k) c = i; h = 1 } else print $c }' /proc/net/snmp
}

# datagrams dropped by the kernel on the socket bound to 127.0.0.1:PORT (/proc/net/udp "drops");
# the generator's socket is gone when a rung ends, so its share is RcvbufErrors minus these
udp_drops() {
    awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" { d += $NF } END { print d + 0 }' /proc/net/udp
}
drops_snapshot() { # one "name=count" per watched socket
    echo "server=$(udp_drops "$SERVER_PORT") uas=$(udp_drops "$UAS_PORT")"
}

# sample CPU of the given pids once a second while a ladder runs
start_top() { # NAME PID...
    local name=$1; shift
    local args=()
    local p
    for p in "$@"; do args+=(-p "$p"); done
    top -b -d 1 "${args[@]}" >"$OUT/$name-top.log" 2>&1 &
    PIDS+=($!)
}

# --- servers --------------------------------------------------------------------------------
SERVER_PIDS=()   # the measured server's processes (Kamailio: proxy, and the UAS when it is Kamailio)
PROXY_PIDS=()
UAS_PIDS=()
kamailio_args() {
    echo "-m $KAM_SHM_MB -M $KAM_PKG_MB -DD -E ${KAM_RCVBUF:+-b $KAM_RCVBUF} $KAM_EXTRA"
}
start_kamailio() { # TAG UAS
    local tag=$1 uas=$2 args
    command -v kamailio >/dev/null || { log "kamailio not installed (apt-get install -y kamailio)"; exit 1; }
    # shellcheck disable=SC2207
    args=($(kamailio_args))
    if [ "$uas" = kamailio ]; then
        # -m/-M: smaller shared/private memory ran out at 2,000 CPS on this machine.
        "${RUN[@]}" kamailio -f "$HERE/kamailio/uas.cfg" "${args[@]}" \
            -A "UAS_LISTEN=udp:127.0.0.1:$UAS_PORT" >"$OUT/$tag-uas.log" 2>&1 &
    else
        "${RUN[@]}" "$SIPP" -sf "$HERE/sipp/uas.xml" -t u1 -i 127.0.0.1 -p "$UAS_PORT" -mp 16000 \
            -buff_size "$SIPP_BUFF" -nostdin -trace_err -error_file "$OUT/$tag-uas-errors.log" \
            >"$OUT/$tag-uas.log" 2>&1 &
    fi
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    "${RUN[@]}" kamailio -f "$HERE/kamailio/proxy.cfg" -n "$KAM_CHILDREN" "${args[@]}" \
        -A "PROXY_LISTEN=udp:127.0.0.1:$PROXY_PORT" -A "UAS_URI=\"sip:127.0.0.1:$UAS_PORT\"" \
        >"$OUT/$tag-proxy.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_udp "$UAS_PORT" && wait_udp "$PROXY_PORT" || { log "kamailio did not start; see $OUT"; exit 1; }
    sleep 0.5
    # -DD keeps the main process in the foreground; its workers are its children.
    # shellcheck disable=SC2207
    PROXY_PIDS=("$PROXY_PID" $(pgrep -P "$PROXY_PID" || true))
    # shellcheck disable=SC2207
    UAS_PIDS=("$UAS_PID" $(pgrep -P "$UAS_PID" || true))
    if [ "$uas" = kamailio ]; then SERVER_PIDS=("${PROXY_PIDS[@]}" "${UAS_PIDS[@]}"); else SERVER_PIDS=("${PROXY_PIDS[@]}"); fi
    start_top "$tag" "${PROXY_PIDS[@]}" "${UAS_PIDS[@]}"
    TARGET_HOSTPORT=127.0.0.1:$PROXY_PORT
    SERVER_PORT=$PROXY_PORT
}

DATA=""
start_dialtone() { # TAG HOLD_MS
    local tag=$1 hold=$2 up=0 code
    DIALTONE=${DIALTONE:-${DIALTONE_TARGET:-$ROOT/target}/release/dialtone}
    if [ ! -x "$DIALTONE" ]; then
        log "building dialtone (release)"
        CARGO_TARGET_DIR=${DIALTONE_TARGET:-$ROOT/target} cargo build --quiet --release -p dialtone --manifest-path "$ROOT/Cargo.toml"
    fi
    if [ $((hold % 1000)) != 0 ]; then log "HOLD_MS must be whole seconds for Dialtone's <Pause>"; exit 2; fi
    DATA=$(mktemp -d)
    "${RUN[@]}" "$SIPLOAD" webhook --listen "127.0.0.1:$WEBHOOK_PORT" --pause $((hold / 1000)) >"$OUT/$tag-webhook.log" 2>&1 &
    WEBHOOK_PID=$!
    PIDS+=("$WEBHOOK_PID")
    DIALTONE_HTTP_ADDR=127.0.0.1:$DT_HTTP_PORT DIALTONE_SIP_ADDR=127.0.0.1:$DT_SIP_PORT \
        DIALTONE_RTP_PORTS=$DT_RTP_PORTS DIALTONE_DATA_DIR=$DATA \
        DIALTONE_ACCOUNT_SID=$ACCOUNT_SID DIALTONE_AUTH_TOKEN=$AUTH_TOKEN \
        DIALTONE_LOG=${DIALTONE_LOG:-info} "${RUN[@]}" "$DIALTONE" serve >"$OUT/$tag-dialtone.log" 2>&1 &
    DT_PID=$!
    PIDS+=("$DT_PID")
    for _ in $(seq 1 60); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCOUNT_SID:$AUTH_TOKEN" \
            "http://127.0.0.1:$DT_HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID/IncomingPhoneNumbers.json" || true)
        if [ "$code" = 200 ]; then up=1; break; fi
        kill -0 "$DT_PID" 2>/dev/null || break
        sleep 0.5
    done
    [ "$up" = 1 ] || { log "dialtone did not come up; see $OUT/$tag-dialtone.log"; tail -20 "$OUT/$tag-dialtone.log" >&2; exit 1; }
    curl -sf -u "$ACCOUNT_SID:$AUTH_TOKEN" \
        --data-urlencode "PhoneNumber=$NUMBER" \
        --data-urlencode "VoiceUrl=http://127.0.0.1:$WEBHOOK_PORT/pause" \
        "http://127.0.0.1:$DT_HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID/IncomingPhoneNumbers.json" \
        >"$OUT/$tag-provision.json" || { log "provisioning $NUMBER failed"; exit 1; }
    SERVER_PIDS=("$DT_PID")
    PROXY_PIDS=()
    UAS_PIDS=("$WEBHOOK_PID")
    start_top "$tag" "$DT_PID" "$WEBHOOK_PID"
    TARGET_HOSTPORT=127.0.0.1:$DT_SIP_PORT
    SERVER_PORT=$DT_SIP_PORT
}

stop_servers() {
    cleanup
    if [ -n "$DATA" ]; then rm -rf "$DATA"; DATA=""; fi
}

# --- one rung -------------------------------------------------------------------------------
# Sets R_ATTEMPTED R_COMPLETED R_FAILED R_503 R_P50 R_P99 R_RETX (and R_LINE, the summary line).
run_sipload() { # FILE RATE CALLS BYE_AFTER_MS
    local file=$1 rate=$2 calls=$3 hold=$4 line setup
    "${RUN[@]}" "$SIPLOAD" --target "sip:$NUMBER@$TARGET_HOSTPORT" --rate "$rate" --calls "$calls" --hold "$hold" \
        --timeout "$TIMEOUT_MS" --sockets "$SOCKETS" >"$file" 2>&1 || true
    line=$(grep '^SIPLOAD_RESULT' "$file" || true)
    R_ATTEMPTED=$(result_field "$line" attempted)
    R_COMPLETED=$(result_field "$line" completed)
    R_FAILED=$(result_field "$line" failed)
    R_P50=$(result_field "$line" setup_p50_ms)
    R_P99=$(result_field "$line" setup_p99_ms)
    R_RETX=$(result_field "$line" retransmissions)
    # sipload counts a 503 as a failed call; here it is counted apart: "non-2xx 503x12,500x1"
    setup=$(grep -o 'setup: timeouts [0-9]*, non-2xx [^;]*' "$file" || true)
    R_503=$(grep -o '503x[0-9]*' <<<"$setup" | cut -dx -f2 || true)
    R_503=${R_503:-0}
    [ -n "$R_ATTEMPTED" ] && R_FAILED=$((R_FAILED - R_503))
}

sipp_stat() { # STATFILE COLUMN: the column's value on the last line
    awk -F';' -v c="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i; next } { v = $k } END { print v + 0 }' "$1"
}

run_sipp() { # DIR RATE CALLS BYE_WAIT_MS
    local dir=$1 rate=$2 calls=$3 wait=$4 limit stat counts rtt n
    mkdir -p "$dir"
    sed -e "s/@BYE_WAIT_MS@/$wait/" -e "s/@TIMEOUT_MS@/$TIMEOUT_MS/" "$HERE/sipp/uac.xml" >"$dir/uac.xml"
    limit=${SIPP_LIMIT:-$(( rate * (wait + TIMEOUT_MS + 2000) / 1000 + 100 ))}
    # A bound on the whole run (calls still open then count as failed): SIPp 3.6.1's own -timeout
    # did not stop a run at 10,500 CPS with 95 calls stuck, so coreutils timeout stops it; the
    # stat file has a line a second.
    # shellcheck disable=SC2086
    (cd "$dir" && timeout "$(( STEP_S + (wait + 2 * TIMEOUT_MS) / 1000 + 30 ))" "${RUN[@]}" "$SIPP" -sf uac.xml -s "$NUMBER" "$TARGET_HOSTPORT" -i 127.0.0.1 -p "$SIPP_PORT" -mp 17000 \
        -t "$SIPP_TRANSPORT" ${SIPP_MAX_SOCKET:+-max_socket $SIPP_MAX_SOCKET} -buff_size "$SIPP_BUFF" \
        -r "$rate" -rp 1000 -m "$calls" -l "$limit" \
        -nostdin -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1 -trace_counts -trace_err \
        $SIPP_EXTRA >sipp.out 2>&1) || true
    stat=$dir/stat.csv
    counts=$(ls "$dir"/uac_*_counts.csv 2>/dev/null | head -1)
    rtt=$(ls "$dir"/uac_*_rtt.csv 2>/dev/null | head -1)
    if [ ! -s "$stat" ]; then R_ATTEMPTED=""; return; fi
    R_ATTEMPTED=$(sipp_stat "$stat" 'OutgoingCall(C)')
    local ok
    ok=$(sipp_stat "$stat" 'SuccessfulCall(C)')
    R_503=0
    [ -n "$counts" ] && R_503=$(sipp_stat "$counts" "$(head -1 "$counts" | tr ';' '\n' | grep '_503_Recv$' | head -1)")
    R_COMPLETED=$((ok - R_503))
    R_FAILED=$((R_ATTEMPTED - ok))
    R_RETX=$(sipp_stat "$stat" 'Retransmissions(C)')
    # set-up times: response time 1, one value per answered call, in ms (SIPp's clock: 1 ms steps)
    if [ -n "$rtt" ]; then
        read -r n R_P50 R_P99 < <(awk -F';' '$3 == 1 { print $2 }' "$rtt" | sort -n | awk '
            { v[NR] = $1 } END {
                if (NR == 0) { print 0, "na", "na"; exit }
                i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
                print NR, v[i50], v[i99] }')
    else
        R_P50=na; R_P99=na
    fi
}

# rung SIDE GEN HOLD RATE KIND: runs one rung, logs it, sets the R_* variables and R_CPU_US
rung() {
    local side=$1 gen=$2 hold=$3 rate=$4 kind=$5 calls c0 c1 g0 g1 p0 p1 rb0 rb1 ie0 ie1 t0 t1 secs
    calls=$(awk -v r="$rate" -v s="$STEP_S" 'BEGIN { printf "%d", r * s + 0.5 }')
    local load
    load=$(loadavg)
    log "$side/$gen hold $hold: $rate cps x ${STEP_S}s ($kind; load average $load)"
    c0=$(cpu_ticks "${SERVER_PIDS[@]}"); p0=$(cpu_ticks "${PROXY_PIDS[@]}")
    local u0 u1
    u0=$(cpu_ticks "${UAS_PIDS[@]}")
    g0=$(child_ticks); rb0=$(udp_counter RcvbufErrors); local d0 d1; d0=$(drops_snapshot); ie0=$(udp_counter InErrors); t0=$(date +%s.%N)
    local bye_after=$hold
    [ "$side" = dialtone ] && bye_after=$((hold + 1000)) # Dialtone hangs up itself; ours is the fallback
    local tag=$side-$CUR_UAS-$gen-h$hold-$rate
    if [ "$gen" = sipload ]; then
        run_sipload "$OUT/$tag.txt" "$rate" "$calls" "$bye_after"
        sed 's/^/    /' "$OUT/$tag.txt" | grep -v SIPLOAD_RESULT >&2 || true
    else
        run_sipp "$OUT/$tag" "$rate" "$calls" "$bye_after"
    fi
    t1=$(date +%s.%N); g1=$(child_ticks); c1=$(cpu_ticks "${SERVER_PIDS[@]}"); p1=$(cpu_ticks "${PROXY_PIDS[@]}")
    u1=$(cpu_ticks "${UAS_PIDS[@]}")
    rb1=$(udp_counter RcvbufErrors); ie1=$(udp_counter InErrors); d1=$(drops_snapshot)
    # per-socket drops over the rung (a socket that closed in between counts 0)
    local drops
    drops=$(awk -v a="$d0" -v b="$d1" 'BEGIN { n = split(a, x, " "); split(b, y, " ")
        for (i = 1; i <= n; i++) { split(x[i], u, "="); split(y[i], v, "="); d = v[2] - u[2]; printf "%sdrops_%s=%d", (i > 1 ? " " : ""), u[1], (d < 0 ? 0 : d) } }')
    R_EXPECTED=$calls
    if [ -z "${R_ATTEMPTED:-}" ]; then
        log "$side/$gen: no result at $rate cps"
        echo "rung side=$side gen=$gen hold_ms=$hold rate=$rate kind=$kind result=none load=$load" >>"$OUT/summary.txt"
        return 1
    fi
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    local per=$((R_COMPLETED > 0 ? R_COMPLETED : 1))
    R_CPU_US=$(( (c1 - c0) * 1000000 / CLK_TCK / per ))
    local proxy_us=$(( (p1 - p0) * 1000000 / CLK_TCK / per )) other_us=$(( (u1 - u0) * 1000000 / CLK_TCK / per ))
    local gen_pct
    gen_pct=$(awk -v t=$((g1 - g0)) -v hz="$CLK_TCK" -v s="$secs" 'BEGIN { printf "%.0f", 100 * t / hz / s }')
    R_LINE="rung side=$side gen=$gen hold_ms=$hold rate=$rate kind=$kind expected=$calls attempted=$R_ATTEMPTED completed=$R_COMPLETED failed=$R_FAILED rejected_503=$R_503 setup_p50_ms=$R_P50 setup_p99_ms=$R_P99 retransmissions=$R_RETX server_cpu_us_per_call=$R_CPU_US proxy_cpu_us_per_call=$proxy_us uas_or_webhook_cpu_us_per_call=$other_us generator_cpu_pct=$gen_pct udp_rcvbuf_errors=$((rb1 - rb0)) $drops drops_generator=$(( rb1 - rb0 - ( $(tr ' ' '\n' <<<"$drops" | cut -d= -f2 | paste -sd+) ) )) wall_s=$secs load=$load"
    echo "$R_LINE" >>"$OUT/summary.txt"
    log "    $R_LINE"
}

# ladder SIDE GEN HOLD UAS: the clean rate, then goodput at GOODPUT x it; prints a CPS_SIDE line
LAST_SIDE_LINE=""
ladder() {
    local side=$1 gen=$2 hold=$3 uas=$4 best=0 best_p99=na best_cpu=na rate
    CUR_UAS=$uas
    wait_quiet
    for rate in $RATES; do
        if ! rung "$side" "$gen" "$hold" "$rate" ladder; then break; fi
        if [ "$R_FAILED" = 0 ] && [ "$R_503" = 0 ] && [ "$R_ATTEMPTED" = "$R_EXPECTED" ] && [ "$R_COMPLETED" = "$R_EXPECTED" ] &&
            awk -v p="$R_P99" -v l="$P99_LIMIT_MS" 'BEGIN { exit !(p + 0 == p && p < l) }'; then
            best=$rate; best_p99=$R_P99; best_cpu=$R_CPU_US
            log "$side/$gen: $rate cps PASS (p99 $R_P99 ms)"
        else
            log "$side/$gen: $rate cps FAIL (completed $R_COMPLETED/$R_EXPECTED, failed $R_FAILED, 503 $R_503, p99 $R_P99 ms)"
            break
        fi
        sleep "$SETTLE_S"
    done
    local gp="" m
    if [ "$best" != 0 ]; then
        for m in $GOODPUT; do
            sleep "$SETTLE_S"
            if rung "$side" "$gen" "$hold" $((best * m)) "goodput${m}x"; then
                gp="$gp goodput_${m}x=$(awk -v c="$R_COMPLETED" -v s="$STEP_S" 'BEGIN { printf "%.0f", c / s }') rejected_503_${m}x=$R_503 failed_${m}x=$R_FAILED p99_${m}x=$R_P99 cpu_us_per_call_${m}x=$R_CPU_US"
            fi
        done
    fi
    LAST_SIDE_LINE="CPS_SIDE side=$side gen=$gen hold_ms=$hold uas=$uas cps=$best setup_p99_ms=$best_p99 cpu_us_per_call=$best_cpu$gp load_end=$(loadavg)"
    echo "$LAST_SIDE_LINE" >>"$OUT/summary.txt"
    echo "$LAST_SIDE_LINE"
}

declare -A SIDE
for hold in $HOLD_MS; do
    for gen in $GENS; do
        if [ "$WHICH" = all ] || [ "$WHICH" = kamailio ]; then
            for uas in $UASES; do
                start_kamailio "kamailio-$uas-$gen-h$hold" "$uas"
                ladder kamailio "$gen" "$hold" "$uas"
                stop_servers
                # the better UAS is the reference
                prev=${SIDE[kamailio-$gen-$hold]:-}
                if [ -z "$prev" ] || [ "$(result_field "$LAST_SIDE_LINE" cps)" -gt "$(result_field "$prev" cps)" ]; then
                    SIDE[kamailio-$gen-$hold]=$LAST_SIDE_LINE
                fi
                sleep "$SETTLE_S"
            done
        fi
        if [ "$WHICH" = all ] || [ "$WHICH" = dialtone ]; then
            start_dialtone "dialtone-$gen-h$hold" "$hold"
            ladder dialtone "$gen" "$hold" webhook
            stop_servers
            SIDE[dialtone-$gen-$hold]=$LAST_SIDE_LINE
            sleep "$SETTLE_S"
        fi
    done
done

echo
echo "Call-rate benchmark ($STEP_S s per rung, rungs: $RATES cps; pass = 0 failed calls, no 503, p99 set-up < $P99_LIMIT_MS ms)"
for hold in $HOLD_MS; do
    for gen in $GENS; do
        k=${SIDE[kamailio-$gen-$hold]:-}
        d=${SIDE[dialtone-$gen-$hold]:-}
        kc=$(result_field "$k" cps); dc=$(result_field "$d" cps)
        ratio=na
        if [ -n "$kc" ] && [ -n "$dc" ] && [ "$kc" != 0 ]; then
            ratio=$(awk -v d="$dc" -v k="$kc" 'BEGIN { printf "%.2f", d / k }')
        fi
        line="CPS_RESULT gen=$gen hold_ms=$hold kamailio_uas=$(result_field "$k" uas) kamailio_cps=${kc:-na} dialtone_cps=${dc:-na} ratio=$ratio"
        line="$line kamailio_p99_ms=$(result_field "$k" setup_p99_ms) dialtone_p99_ms=$(result_field "$d" setup_p99_ms)"
        line="$line kamailio_cpu_us_per_call=$(result_field "$k" cpu_us_per_call) dialtone_cpu_us_per_call=$(result_field "$d" cpu_us_per_call)"
        for m in $GOODPUT; do
            line="$line kamailio_goodput_${m}x=$(result_field "$k" "goodput_${m}x") dialtone_goodput_${m}x=$(result_field "$d" "goodput_${m}x") dialtone_503_${m}x=$(result_field "$d" "rejected_503_${m}x")"
        done
        echo "$line" | tee -a "$OUT/summary.txt"
    done
done
echo "  per-rung results: $OUT/summary.txt"
