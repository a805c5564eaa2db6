#!/usr/bin/env bash
# Proxy (number masking) benchmark, in two parts.
#
# 1. The index at scale: `examples/proxy_index` (crate node) writes SESSIONS open sessions (two
#    participants each, one pool number) into a fresh SQLite store through the bulk path, loads
#    the runtime's index from it as a starting node does, and times 1,000,000 lookups of (caller,
#    dialled proxy number), hits and misses: PROXY_INDEX_RESULT.
# 2. Calls per second through Proxy sessions next to plain numbers, in the same run, on a node
#    started on that store (so its index holds the SESSIONS sessions): sipload (bench/src) calls
#      - a plain number whose webhook (sipload webhook) answers the <Dial> a session makes, and
#      - a pool number from a participant of one of the sessions (no webhook: the index decides);
#    both dial +12000000001 with the pool number as caller ID, through a trunk to a SIPp UAS
#    (`sipp -sn uas`). Each rate is run for plain and then proxy; a rung passes with every call
#    completed and p99 set-up under P99_LIMIT_MS, after one uncounted warm-up rung of each;
#    each ladder stops at its first failing rung. PROXY_CPS_RESULT gives both best rates and the
#    p99 set-up of both at each rate.
#
#   bench/proxy.sh                          # 1,000,000 sessions, rates 200..1000
#   SESSIONS=100000 RATES="100 200" bench/proxy.sh
#   DIALTONE=path/to/dialtone EXAMPLE=path/to/proxy_index SIPLOAD=path/to/sipload bench/proxy.sh
#
# Everything binds to 127.0.0.1 and everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

SESSIONS=${SESSIONS:-1000000}
RATES=${RATES:-"200 400 600 800 1000"}
STEP_S=${STEP_S:-8}
HOLD_MS=${HOLD_MS:-1000}
P99_LIMIT_MS=${P99_LIMIT_MS:-100}
TIMEOUT_MS=${TIMEOUT_MS:-5000}
SETTLE_S=${SETTLE_S:-3}
UAS_PORT=${UAS_PORT:-15190}
DT_SIP_PORT=${DT_SIP_PORT:-15180}
DT_HTTP_PORT=${DT_HTTP_PORT:-18180}
WEBHOOK_PORT=${WEBHOOK_PORT:-18188}
DT_RTP_PORTS=${DT_RTP_PORTS:-40000-49999}
PLAIN=${PLAIN:-+15550001000}
POOL_NUMBER=${POOL_NUMBER:-+15550009000}
CALLER=+12000000000 # participant 0 of session 0 (see examples/proxy_index.rs)
CALLEE=+12000000001 # the other participant of that session
ACCOUNT_SID=${ACCOUNT_SID:-AC0123456789abcdef0123456789abcdef}
AUTH_TOKEN=${AUTH_TOKEN:-benchbenchbenchbenchbenchbench12}
export ACCOUNT_SID AUTH_TOKEN POOL_NUMBER

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/proxy-$STAMP}
mkdir -p "$OUT"
echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), sessions $SESSIONS" >"$OUT/summary.txt"

PIDS=()
DATA=$(mktemp -d)
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[proxy] $*" >&2; }
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
DIALTONE=${DIALTONE:-$TARGET/release/dialtone}
EXAMPLE=${EXAMPLE:-$TARGET/release/examples/proxy_index}
if [ ! -x "$DIALTONE" ] || [ ! -x "$EXAMPLE" ]; then
    log "building dialtone and the proxy_index example (release)"
    cargo build --quiet --release -p dialtone -p node --example proxy_index --manifest-path "$ROOT/Cargo.toml"
fi
if [ -z "${SIPLOAD:-}" ]; then
    BENCH_TARGET=${BENCH_TARGET:-$HERE/target}
    CARGO_TARGET_DIR=$BENCH_TARGET cargo build --quiet --release --locked --manifest-path "$HERE/Cargo.toml"
    SIPLOAD=$BENCH_TARGET/release/sipload
fi
command -v sipp >/dev/null || { log "sipp is not installed (apt-get install -y sip-tester)"; exit 1; }

# --- 1. the index -----------------------------------------------------------------------------
log "writing $SESSIONS sessions and loading the index"
"$EXAMPLE" "sqlite://$DATA/dialtone.db" "$SESSIONS" 2>"$OUT/index.log" | tee "$OUT/index.txt" >&2
INDEX_LINE=$(grep '^PROXY_INDEX_RESULT' "$OUT/index.txt")
echo "$INDEX_LINE" >>"$OUT/summary.txt"

# --- 2. calls per second ----------------------------------------------------------------------
sipp -sn uas -i 127.0.0.1 -p "$UAS_PORT" -nostdin -bg -trace_err -error_file "$OUT/sipp-errors.log" >/dev/null 2>&1 || true
SIPP_PID=$(pgrep -n -f "sipp -sn uas -i 127.0.0.1 -p $UAS_PORT" || true)
[ -n "$SIPP_PID" ] && PIDS+=("$SIPP_PID")
DIAL="<Response><Dial callerId=\"$POOL_NUMBER\" answerOnBridge=\"true\"><Number>$CALLEE</Number></Dial></Response>"
"$SIPLOAD" webhook --listen "127.0.0.1:$WEBHOOK_PORT" --twiml "$DIAL" >"$OUT/webhook.log" 2>&1 &
PIDS+=($!)
cat >"$OUT/dialtone.toml" <<EOF
[[trunks]]
name = "uas"
uri = "sip:127.0.0.1:$UAS_PORT"
prefixes = ["+1200"]
EOF
started=$(date +%s.%N)
DIALTONE_HTTP_ADDR=127.0.0.1:$DT_HTTP_PORT DIALTONE_SIP_ADDR=127.0.0.1:$DT_SIP_PORT \
    DIALTONE_RTP_PORTS=$DT_RTP_PORTS DIALTONE_DATA_DIR=$DATA \
    DIALTONE_ACCOUNT_SID=$ACCOUNT_SID DIALTONE_AUTH_TOKEN=$AUTH_TOKEN \
    DIALTONE_LOG=${DIALTONE_LOG:-warn} "$DIALTONE" serve --config "$OUT/dialtone.toml" >"$OUT/dialtone.log" 2>&1 &
DT_PID=$!
PIDS+=("$DT_PID")
up=0
for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCOUNT_SID:$AUTH_TOKEN" \
        "http://127.0.0.1:$DT_HTTP_PORT/v1/Services" || true)
    if [ "$code" = 200 ]; then up=1; break; fi
    kill -0 "$DT_PID" 2>/dev/null || break
    sleep 0.2
done
[ "$up" = 1 ] || { log "dialtone did not come up; see $OUT/dialtone.log"; tail -20 "$OUT/dialtone.log" >&2; exit 1; }
START_S=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
RSS_MB=$(awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$DT_PID/status")
log "dialtone up in $START_S s with $SESSIONS sessions loaded, RSS $RSS_MB MB"
curl -sf -u "$ACCOUNT_SID:$AUTH_TOKEN" --data-urlencode "PhoneNumber=$PLAIN" \
    --data-urlencode "VoiceUrl=http://127.0.0.1:$WEBHOOK_PORT/dial" \
    "http://127.0.0.1:$DT_HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID/IncomingPhoneNumbers.json" >"$OUT/provision.json" \
    || { log "provisioning $PLAIN failed"; exit 1; }

# rung NAME NUMBER RATE: prints "pass p99" or "fail p99"
rung() {
    local name=$1 number=$2 rate=$3 expected line
    expected=$(awk -v r="$rate" -v s="$STEP_S" 'BEGIN { printf "%d", r * s + 0.5 }')
    "$SIPLOAD" --target "sip:$number@127.0.0.1:$DT_SIP_PORT" --from "$CALLER" --rate "$rate" --calls "$expected" \
        --hold "$HOLD_MS" --timeout "$TIMEOUT_MS" >"$OUT/$name-$rate.txt" 2>&1 || true
    line=$(grep '^SIPLOAD_RESULT' "$OUT/$name-$rate.txt" || true)
    echo "$name rate=$rate ${line#SIPLOAD_RESULT }" >>"$OUT/summary.txt"
    local completed failed p99
    completed=$(field "$line" completed)
    failed=$(field "$line" failed)
    p99=$(field "$line" setup_p99_ms)
    if [ -n "$line" ] && [ "$failed" = 0 ] && [ "$completed" = "$expected" ] &&
        awk -v p="$p99" -v l="$P99_LIMIT_MS" 'BEGIN { exit !(p < l) }'; then
        echo "pass ${p99:-na}"
    else
        echo "fail ${p99:-na} (completed ${completed:-0}/$expected, failed ${failed:-?})"
    fi
}

# Warm-up, not counted: the first calls of a fresh node pay for cold caches and connections.
first_rate=${RATES%% *}
rung warmup-plain "$PLAIN" "$first_rate" >/dev/null; sleep "$SETTLE_S"
rung warmup-proxy "$POOL_NUMBER" "$first_rate" >/dev/null; sleep "$SETTLE_S"

PLAIN_BEST=0
PROXY_BEST=0
PER_RATE=""
plain_ok=1
proxy_ok=1
for rate in $RATES; do
    [ "$plain_ok" = 1 ] || [ "$proxy_ok" = 1 ] || break
    p=$(rung plain "$PLAIN" "$rate"); sleep "$SETTLE_S"
    x=$(rung proxy "$POOL_NUMBER" "$rate"); sleep "$SETTLE_S"
    log "$rate cps: plain $p; proxy $x"
    [[ $p == pass* ]] && [ "$plain_ok" = 1 ] && PLAIN_BEST=$rate || plain_ok=0
    [[ $x == pass* ]] && [ "$proxy_ok" = 1 ] && PROXY_BEST=$rate || proxy_ok=0
    PER_RATE="$PER_RATE p99_ms_at_${rate}=$(cut -d' ' -f2 <<<"$p")/$(cut -d' ' -f2 <<<"$x")"
done
INTERACTIONS=$(curl -s -u "$ACCOUNT_SID:$AUTH_TOKEN" "http://127.0.0.1:$DT_HTTP_PORT/v1/Services" | head -c 300)
echo "$INTERACTIONS" >"$OUT/services.json"

echo
echo "Proxy benchmark ($SESSIONS open sessions)"
echo "  index: $INDEX_LINE"
echo "  node start with the sessions loaded: $START_S s, RSS $RSS_MB MB"
echo "  calls/s, $STEP_S s per rung, pass = every call completed, p99 set-up < $P99_LIMIT_MS ms:"
echo "    plain number (webhook answers the <Dial>): $PLAIN_BEST cps"
echo "    proxy number (session lookup, no webhook): $PROXY_BEST cps"
echo "    p99 set-up plain/proxy:$PER_RATE"
echo "  per-rung results: $OUT/summary.txt"
echo "PROXY_CPS_RESULT sessions=$SESSIONS start_s=$START_S rss_mb=$RSS_MB plain_cps=$PLAIN_BEST proxy_cps=$PROXY_BEST$PER_RATE"
