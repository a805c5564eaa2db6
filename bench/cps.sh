#!/usr/bin/env bash
# Call-rate benchmark: the highest rate of full calls (INVITE, 200, ACK, 2 s hold, BYE, 200)
# that completes with no failed call and p99 set-up under P99_LIMIT_MS, first for Kamailio
# (stateful proxy in front of a stateless Kamailio UAS), then for Dialtone answering
# <Response><Pause length="2"/></Response> from a local webhook. Prints both and the ratio.
#
#   bench/cps.sh                 # both halves
#   bench/cps.sh kamailio        # one half only (or: dialtone)
#   RATES="100 200" STEP_S=5 bench/cps.sh
#
# Everything runs on 127.0.0.1 and everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WHICH=${1:-all}

RATES=${RATES:-"250 500 1000 1500 2000"}
STEP_S=${STEP_S:-10}                 # seconds of calls per rung
HOLD_MS=${HOLD_MS:-2000}             # matches <Pause length="2"/>
P99_LIMIT_MS=${P99_LIMIT_MS:-20}
TIMEOUT_MS=${TIMEOUT_MS:-5000}
SETTLE_S=${SETTLE_S:-3}              # pause between rungs so lingering transactions expire
SOCKETS=${SOCKETS:-1}                # sipload sockets/threads
# On a shared machine, a scheduling prefix for the servers and the generator so the figures
# measure them and not the neighbours, e.g. BENCH_PRIO="nice -n -19" or BENCH_PRIO="chrt -f 10"
# (both need root). Empty: normal priority.
BENCH_PRIO=${BENCH_PRIO:-}

PROXY_PORT=${PROXY_PORT:-15060}
UAS_PORT=${UAS_PORT:-15090}
DT_SIP_PORT=${DT_SIP_PORT:-15080}
DT_HTTP_PORT=${DT_HTTP_PORT:-18080}
WEBHOOK_PORT=${WEBHOOK_PORT:-18088}
DT_RTP_PORTS=${DT_RTP_PORTS:-20000-39999}
NUMBER=${NUMBER:-+15550001000}
ACCOUNT_SID=${ACCOUNT_SID:-AC0123456789abcdef0123456789abcdef}
AUTH_TOKEN=${AUTH_TOKEN:-benchbenchbenchbenchbenchbench12}

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/$STAMP}
mkdir -p "$OUT"
echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), BENCH_PRIO=${BENCH_PRIO:-none}" >"$OUT/summary.txt"

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
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[cps] $*" >&2; }

# shellcheck disable=SC2206 # word splitting of the prefix is intended
RUN=($BENCH_PRIO)

# --- build the generator -------------------------------------------------------------------
BENCH_TARGET=${BENCH_TARGET:-${CARGO_TARGET_DIR:-$HERE/target}}
CARGO_TARGET_DIR=$BENCH_TARGET cargo build --quiet --release --locked --manifest-path "$HERE/Cargo.toml"
SIPLOAD=$BENCH_TARGET/release/sipload

result_field() { # LINE KEY
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

wait_udp() { # PORT: bounded wait for a UDP listener
    for _ in $(seq 1 50); do
        ss -Hlun "sport = :$1" | grep -q . && return 0
        sleep 0.2
    done
    return 1
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

# ladder NAME TARGET_URI HOLD: prints the best passing rate on stdout
ladder() {
    local name=$1 target=$2 hold=$3 best=0 rate line
    for rate in $RATES; do
        local expected
        expected=$(awk -v r="$rate" -v s="$STEP_S" 'BEGIN { printf "%d", r * s + 0.5 }')
        log "$name: $rate cps x ${STEP_S}s (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
        "${RUN[@]}" "$SIPLOAD" --target "$target" --rate "$rate" --calls "$expected" --hold "$hold" \
            --timeout "$TIMEOUT_MS" --sockets "$SOCKETS" >"$OUT/$name-$rate.txt" 2>&1 || true
        sed 's/^/    /' "$OUT/$name-$rate.txt" | grep -v SIPLOAD_RESULT >&2 || true
        line=$(grep '^SIPLOAD_RESULT' "$OUT/$name-$rate.txt" || true)
        echo "$name rate=$rate ${line#SIPLOAD_RESULT }" >>"$OUT/summary.txt"
        if [ -z "$line" ]; then
            log "$name: sipload gave no result at $rate cps"
            break
        fi
        local attempted completed failed p99
        attempted=$(result_field "$line" attempted)
        completed=$(result_field "$line" completed)
        failed=$(result_field "$line" failed)
        p99=$(result_field "$line" setup_p99_ms)
        if [ "$failed" = 0 ] && [ "$attempted" = "$expected" ] && [ "$completed" = "$expected" ] &&
            awk -v p="$p99" -v l="$P99_LIMIT_MS" 'BEGIN { exit !(p < l) }'; then
            best=$rate
            log "$name: $rate cps PASS (p99 ${p99} ms)"
        else
            log "$name: $rate cps FAIL (completed $completed/$expected, failed $failed, p99 ${p99} ms)"
            break
        fi
        sleep "$SETTLE_S"
    done
    echo "$best"
}

KAM_BEST=""
DT_BEST=""

# --- Kamailio -------------------------------------------------------------------------------
if [ "$WHICH" = all ] || [ "$WHICH" = kamailio ]; then
    command -v kamailio >/dev/null || { log "kamailio not installed (apt-get install -y kamailio)"; exit 1; }
    # -m/-M: smaller shared/private memory ran out at 2,000 CPS on this machine.
    "${RUN[@]}" kamailio -f "$HERE/kamailio/uas.cfg" -m 1024 -M 64 -DD -E \
        -A "UAS_LISTEN=udp:127.0.0.1:$UAS_PORT" >"$OUT/kamailio-uas.log" 2>&1 &
    UAS_PID=$!
    PIDS+=("$UAS_PID")
    "${RUN[@]}" kamailio -f "$HERE/kamailio/proxy.cfg" -m 1024 -M 64 -DD -E \
        -A "PROXY_LISTEN=udp:127.0.0.1:$PROXY_PORT" -A "UAS_URI=\"sip:127.0.0.1:$UAS_PORT\"" \
        >"$OUT/kamailio-proxy.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_udp "$UAS_PORT" && wait_udp "$PROXY_PORT" || { log "kamailio did not start; see $OUT"; exit 1; }
    # -DD keeps the main process in the foreground; its workers are its children.
    start_top kamailio $(pgrep -P "$UAS_PID" | tr '\n' ' ') $(pgrep -P "$PROXY_PID" | tr '\n' ' ') "$UAS_PID" "$PROXY_PID"
    KAM_BEST=$(ladder kamailio "sip:$NUMBER@127.0.0.1:$PROXY_PORT" "$HOLD_MS")
    cleanup
fi

# --- Dialtone -------------------------------------------------------------------------------
if [ "$WHICH" = all ] || [ "$WHICH" = dialtone ]; then
    DIALTONE=${DIALTONE:-${DIALTONE_TARGET:-$ROOT/target}/release/dialtone}
    if [ ! -x "$DIALTONE" ]; then
        log "building dialtone (release)"
        CARGO_TARGET_DIR=${DIALTONE_TARGET:-$ROOT/target} cargo build --quiet --release -p dialtone --manifest-path "$ROOT/Cargo.toml"
    fi
    DATA=$(mktemp -d)
    "${RUN[@]}" "$SIPLOAD" webhook --listen "127.0.0.1:$WEBHOOK_PORT" --pause 2 >"$OUT/webhook.log" 2>&1 &
    PIDS+=($!)
    DIALTONE_HTTP_ADDR=127.0.0.1:$DT_HTTP_PORT DIALTONE_SIP_ADDR=127.0.0.1:$DT_SIP_PORT \
        DIALTONE_RTP_PORTS=$DT_RTP_PORTS DIALTONE_DATA_DIR=$DATA \
        DIALTONE_ACCOUNT_SID=$ACCOUNT_SID DIALTONE_AUTH_TOKEN=$AUTH_TOKEN \
        DIALTONE_LOG=${DIALTONE_LOG:-info} "${RUN[@]}" "$DIALTONE" serve >"$OUT/dialtone.log" 2>&1 &
    DT_PID=$!
    PIDS+=("$DT_PID")
    up=0
    for _ in $(seq 1 60); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCOUNT_SID:$AUTH_TOKEN" \
            "http://127.0.0.1:$DT_HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID/IncomingPhoneNumbers.json" || true)
        if [ "$code" = 200 ]; then up=1; break; fi
        kill -0 "$DT_PID" 2>/dev/null || break
        sleep 0.5
    done
    [ "$up" = 1 ] || { log "dialtone did not come up; see $OUT/dialtone.log"; tail -20 "$OUT/dialtone.log" >&2; exit 1; }
    curl -sf -u "$ACCOUNT_SID:$AUTH_TOKEN" \
        --data-urlencode "PhoneNumber=$NUMBER" \
        --data-urlencode "VoiceUrl=http://127.0.0.1:$WEBHOOK_PORT/pause" \
        "http://127.0.0.1:$DT_HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID/IncomingPhoneNumbers.json" \
        >"$OUT/provision.json" || { log "provisioning $NUMBER failed"; exit 1; }
    start_top dialtone "$DT_PID"
    # Dialtone ends each call itself when the Pause is over; our BYE only fires if it does not.
    DT_BEST=$(ladder dialtone "sip:$NUMBER@127.0.0.1:$DT_SIP_PORT" "$((HOLD_MS + 1000))")
    cleanup
    rm -rf "$DATA"
fi

echo
echo "Call-rate benchmark ($STEP_S s per rung, rungs: $RATES cps; pass = 0 failed calls and p99 set-up < $P99_LIMIT_MS ms)"
[ -n "$KAM_BEST" ] && echo "  kamailio (stateful proxy + stateless UAS): $KAM_BEST cps"
[ -n "$DT_BEST" ] && echo "  dialtone (<Pause length=\"2\"/>):           $DT_BEST cps"
RATIO=""
if [ -n "$KAM_BEST" ] && [ -n "$DT_BEST" ] && [ "$KAM_BEST" != 0 ]; then
    RATIO=$(awk -v d="$DT_BEST" -v k="$KAM_BEST" 'BEGIN { printf "%.2f", d / k }')
    echo "  ratio dialtone/kamailio: $RATIO"
fi
echo "  per-rung results: $OUT/summary.txt"
echo "CPS_RESULT kamailio_cps=${KAM_BEST:-na} dialtone_cps=${DT_BEST:-na} ratio=${RATIO:-na}"
