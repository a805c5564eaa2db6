#!/usr/bin/env bash
# SMS throughput end to end: messages created through the REST API (POST Messages.json), sent
# by Dialtone's outbox over SMPP to a loopback SMSC, delivery receipts flowing back, on SQLite
# and on PostgreSQL; next to an independent SMPP client pushing straight into the same SMSC.
#
#   bench/sms.sh                   # reference, sqlite, postgres
#   bench/sms.sh reference         # one part only (or: sqlite, postgres)
#   RATES="500 1000" STEP_S=5 bench/sms.sh sqlite
#
# The SMSC is `smscsink` (src/smscsink.rs, on Dialtone's smpp codec): it answers every submit_sm
# at once, sends a DELIVRD receipt on the same bind 100 ms later (RECEIPT_DELAY_MS), and times each
# submit against the `t=<unix ns>` at the start of its text: msgload puts there the time the
# API request was due, so its p99 runs from the API request to the submit_sm (the
# submit_sm_resp leaves in the same write). The npm `smpp` SMSC of the interop tests
# (tests/smsc/smsc.js) is measured at its own ceiling with the same independent client, to say
# why the sink is used for Dialtone.
#
# Per rung (RATES, STEP_S seconds each, open loop, CONNECTIONS keep-alive connections,
# DESTINATIONS distinct To numbers): API accepted/s and HTTP p99 (msgload, latency from when the
# request was due), then the script waits for the backlog to drain (no progress for
# DRAIN_IDLE_S, at most DRAIN_MAX_S) and reads the sink: submits, sustained submits/s = submits
# / (last submit - first submit), receipts answered OK by Dialtone (deliver_sm_resp), end-to-end
# p50/p99, and the store: messages `delivered`. A rung passes when >= 99 % of the rate was
# accepted and submitted per second, every accepted message was submitted, every receipt was
# answered OK and every message is `delivered`, and the end-to-end p99 is under P99_LIMIT_MS.
# The ladder stops at the first failing rung. Dialtone binds BINDS transceivers with WINDOW
# submits in flight each ([[smsc]] in a TOML config).
#
# Everything binds to 127.0.0.1; everything started here is stopped on exit. Logs, top samples
# and per-rung lines go to bench/results/sms-<time>/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WHICH=${1:-all}

RATES=${RATES:-"100 200 500 1000 2000 5000 10000"}
STEP_S=${STEP_S:-10}
WARMUP_RATE=${WARMUP_RATE:-200}
WARMUP_S=${WARMUP_S:-2}
CONNECTIONS=${CONNECTIONS:-256}
DESTINATIONS=${DESTINATIONS:-10000}
BINDS=${BINDS:-4}
WINDOW=${WINDOW:-64}
P99_LIMIT_MS=${P99_LIMIT_MS:-1000}
DRAIN_IDLE_S=${DRAIN_IDLE_S:-5}
DRAIN_MAX_S=${DRAIN_MAX_S:-120}
RECEIPT_DELAY_MS=${RECEIPT_DELAY_MS:-100}  # as the npm SMSC; immediate receipts slow the node client 3x
REF_S=${REF_S:-10}                 # seconds of the independent client per SMSC
REF_BINDS=${REF_BINDS:-4}
REF_WINDOW=${REF_WINDOW:-64}
HTTP_PORT=${HTTP_PORT:-18280}
SIP_PORT=${SIP_PORT:-15280}
SINK_PORT=${SINK_PORT:-12775}
CTL_PORT=${CTL_PORT:-12776}
NPM_SMSC_PORT=${NPM_SMSC_PORT:-12777}
FROM_NUMBER=${FROM_NUMBER:-+15550100000}
ACCOUNT_SID=${ACCOUNT_SID:-AC0123456789abcdef0123456789abcdef}
AUTH_TOKEN=${AUTH_TOKEN:-benchbenchbenchbenchbenchbench12}
# The npm smpp package (tests/smsc's dependency): `npm ci` there if missing, or NODE_MODULES=.
NODE_MODULES=${NODE_MODULES:-$ROOT/tests/smsc/node_modules}
BENCH_PRIO=${BENCH_PRIO:-}
# shellcheck disable=SC2206 # word splitting of the prefix is intended
RUN=($BENCH_PRIO)

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/sms-$STAMP}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt

log() { echo "[sms] $*" >&2; }

for tool in curl node top; do
    command -v "$tool" >/dev/null || { log "missing: $tool"; exit 1; }
done
if [ ! -d "$NODE_MODULES/smpp" ]; then
    log "installing tests/smsc's node modules (npm ci)"
    (cd "$ROOT/tests/smsc" && npm ci --silent >&2)
fi

DIALTONE_TARGET=${DIALTONE_TARGET:-$ROOT/target}
DIALTONE=${DIALTONE:-$DIALTONE_TARGET/release/dialtone}
BENCH_TARGET=${BENCH_TARGET:-$HERE/target}
build() {
    if [ -z "${SKIP_BUILD:-}" ]; then
        log "building dialtone (release) and the bench's smscsink, msgload"
        CARGO_TARGET_DIR=$DIALTONE_TARGET cargo build --quiet --release -p dialtone --manifest-path "$ROOT/Cargo.toml"
        CARGO_TARGET_DIR=$BENCH_TARGET cargo build --quiet --release --locked --manifest-path "$HERE/Cargo.toml" \
            --bin smscsink --bin msgload
    fi
}

PIDS=()
TMPS=()
cleanup() {
    local pid d
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
    for d in "${TMPS[@]}"; do rm -rf "$d"; done
    TMPS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { # LINE KEY
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

# --- the sink -----------------------------------------------------------------------------------
start_sink() { # NAME
    "${RUN[@]}" "$BENCH_TARGET/release/smscsink" --listen "127.0.0.1:$SINK_PORT" --control "127.0.0.1:$CTL_PORT" \
        --receipt-delay-ms "$RECEIPT_DELAY_MS" >"$OUT/$1-sink.log" 2>&1 &
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    for _ in $(seq 1 50); do grep -q '^READY' "$OUT/$1-sink.log" 2>/dev/null && return 0; sleep 0.1; done
    log "smscsink did not start: $(cat "$OUT/$1-sink.log")"
    exit 1
}

sink() { # peek|report: one SINK line
    local line
    exec 3<>"/dev/tcp/127.0.0.1/$CTL_PORT"
    echo "$1" >&3
    read -r line <&3
    exec 3<&-
    echo "$line"
}

# Waits until the sink has seen `want` submits and as many receipt resps, or nothing moved for
# DRAIN_IDLE_S, or DRAIN_MAX_S passed.
drain() { # WANT
    local want=$1 line s r last="" idle=0 t=0
    while :; do
        line=$(sink peek)
        s=$(field "$line" submits); r=$(field "$line" receipt_resps)
        [ "$s" -ge "$want" ] && [ "$r" -ge "$s" ] && return 0
        if [ "$s/$r" = "$last" ]; then idle=$((idle + 1)); else idle=0; fi
        last="$s/$r"
        [ "$idle" -ge "$DRAIN_IDLE_S" ] && { log "drain: stuck at $s submits, $r receipts answered (want $want)"; return 0; }
        t=$((t + 1))
        [ "$t" -ge "$DRAIN_MAX_S" ] && { log "drain: gave up after $DRAIN_MAX_S s at $s submits, $r receipts answered"; return 0; }
        sleep 1
    done
}

# --- the reference: the independent client ------------------------------------------------------
client() { # NAME PORT
    NODE_PATH=$NODE_MODULES "${RUN[@]}" node "$HERE/smppclient.js" --port "$2" --binds "$REF_BINDS" \
        --window "$REF_WINDOW" --duration "$REF_S" --destinations "$DESTINATIONS" >"$OUT/$1-client.log" 2>&1 || true
    grep '^SMPPCLIENT_RESULT' "$OUT/$1-client.log" || echo "SMPPCLIENT_RESULT submits_per_s=0 receipts=0 accepted=0"
}

reference() {
    local c s
    start_sink reference
    sink report >/dev/null
    c=$(client reference-sink "$SINK_PORT")
    sleep 1
    s=$(sink report)
    echo "reference-sink ${c#SMPPCLIENT_RESULT } sink_p50_ms=$(field "$s" p50_ms) sink_p99_ms=$(field "$s" p99_ms) sink_receipt_resps=$(field "$s" receipt_resps) sink_submits=$(field "$s" submits)" >>"$SUMMARY"
    log "independent client -> smscsink: $(field "$c" submits_per_s) submits/s, $(field "$c" accepted) accepted, $(field "$c" receipts) receipts; sink: p99 $(field "$s" p99_ms) ms"
    cleanup
    NODE_PATH=$NODE_MODULES "${RUN[@]}" node "$ROOT/tests/smsc/smsc.js" --smpp-port "$NPM_SMSC_PORT" --http-port 0 \
        >"$OUT/npm-smsc.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do grep -q '^READY' "$OUT/npm-smsc.log" 2>/dev/null && break; sleep 0.1; done
    c=$(client reference-npm "$NPM_SMSC_PORT")
    echo "reference-npm ${c#SMPPCLIENT_RESULT }" >>"$SUMMARY"
    log "independent client -> npm smpp SMSC (smsc.js): $(field "$c" submits_per_s) submits/s, $(field "$c" accepted) accepted, $(field "$c" receipts) receipts"
    cleanup
}

# --- Dialtone -----------------------------------------------------------------------------------
AUTH=(-u "$ACCOUNT_SID:$AUTH_TOKEN")
API="http://127.0.0.1:$HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID"

start_dialtone() { # BACKEND DATABASE_URL(empty: SQLite in the data dir)
    local backend=$1 url=$2 data
    data=$(mktemp -d "${TMPDIR:-/tmp}/dialtone-smsbench.XXXXXX")
    TMPS+=("$data")
    DATA_DIR=$data
    cat >"$data/bench.toml" <<TOML
[[smsc]]
name = "sink"
host = "127.0.0.1"
port = $SINK_PORT
system_id = "bench"
password = "bench"
binds = $BINDS
window = $WINDOW
TOML
    env DIALTONE_HTTP_ADDR="127.0.0.1:$HTTP_PORT" DIALTONE_SIP_ADDR="127.0.0.1:$SIP_PORT" \
        DIALTONE_RTP_PORTS=41000-41099 DIALTONE_DATA_DIR="$data" ${url:+DIALTONE_DATABASE_URL="$url"} \
        DIALTONE_ACCOUNT_SID="$ACCOUNT_SID" DIALTONE_AUTH_TOKEN="$AUTH_TOKEN" \
        DIALTONE_LOG="${DIALTONE_LOG:-warn}" "${RUN[@]}" "$DIALTONE" serve --config "$data/bench.toml" \
        >"$OUT/$backend-dialtone.log" 2>&1 &
    DT_PID=$!
    PIDS+=("$DT_PID")
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$API.json" || true)" = 200 ] && return 0
        kill -0 "$DT_PID" 2>/dev/null || break
        sleep 0.2
    done
    log "dialtone did not come up; see $OUT/$backend-dialtone.log"
    tail -20 "$OUT/$backend-dialtone.log" >&2
    exit 1
}

DB_URL=""
statuses() { # -> "delivered=N sent=N queued=N sending=N failed=N undelivered=N"
    local sql="SELECT status, count(*) FROM messages GROUP BY status"
    if [ -z "$DB_URL" ]; then
        sqlite3 -separator = "$DATA_DIR/dialtone.db" "$sql" | tr '\n' ' '
    else
        psql -qAt -F= "$DB_URL" -c "$sql" | tr '\n' ' '
    fi
}

cpu_avg() { # TOPFILE PID -> average %CPU over the samples after the first
    awk -v pid="$2" '$1 == pid { n++; if (n > 1) { s += $9; k++ } } END { if (k) printf "%.0f", s / k; else print "na" }' "$1"
}

load() { # BACKEND LABEL RATE SECONDS DEST_BASE -> MSGLOAD_RESULT line
    "${RUN[@]}" "$BENCH_TARGET/release/msgload" --addr "127.0.0.1:$HTTP_PORT" --account "$ACCOUNT_SID" \
        --token "$AUTH_TOKEN" --from "$FROM_NUMBER" --rate "$3" --duration "$4" --connections "$CONNECTIONS" \
        --destinations "$DESTINATIONS" --dest-base "$5" >"$OUT/$1-$2-msgload.log" 2>&1 || true
    grep '^MSGLOAD_RESULT' "$OUT/$1-$2-msgload.log" || echo "MSGLOAD_RESULT accepted=0 accepted_per_s=0 p99_ms=na"
}

bench_backend() { # BACKEND DATABASE_URL
    local backend=$1 url=$2 code m s accepted submits rate delivered before after st verdict
    local cpu_dt cpu_sink base=0
    DB_URL=$url
    start_sink "$backend"
    start_dialtone "$backend" "$url"
    code=$(curl -s -o "$OUT/$backend-number.json" -w '%{http_code}' "${AUTH[@]}" \
        --data-urlencode "PhoneNumber=$FROM_NUMBER" "$API/IncomingPhoneNumbers.json")
    [ "$code" = 201 ] || { log "creating $FROM_NUMBER gave $code: $(cat "$OUT/$backend-number.json")"; exit 1; }
    for _ in $(seq 1 50); do [ "$(field "$(sink peek)" binds)" -ge "$BINDS" ] && break; sleep 0.2; done
    log "$backend: dialtone up, $(field "$(sink peek)" binds) binds at the sink"
    # Warm-up: not counted.
    m=$(load "$backend" warmup "$WARMUP_RATE" "$WARMUP_S" 0)
    drain "$(field "$m" accepted)"
    sink report >/dev/null
    base=$((WARMUP_RATE * WARMUP_S))
    before=$(field "$(statuses)" delivered); before=${before:-0}
    for rate in $RATES; do
        top -b -d 1 -n $((STEP_S + 1)) -p "$DT_PID,$SINK_PID" >"$OUT/$backend-$rate-top.txt" 2>/dev/null &
        local top_pid=$!
        m=$(load "$backend" "$rate" "$rate" "$STEP_S" "$base")
        wait "$top_pid" 2>/dev/null || true
        base=$((base + rate * STEP_S))
        accepted=$(field "$m" accepted)
        drain "$accepted"
        s=$(sink report)
        st=$(statuses)
        after=$(field "$st" delivered); after=${after:-0}
        delivered=$((after - before))
        before=$after
        submits=$(field "$s" submits)
        # Sustained: the submits over the time from the first to the last (an open loop at R/s
        # for D s spans D - 1/R; a backlog that drains late stretches it).
        rate_s=$(awk -v n="$submits" -v t0="$(field "$s" first_s)" -v t1="$(field "$s" last_s)" \
            'BEGIN { w = t1 - t0; printf "%.0f", (w > 0 ? (n - 1) / w : 0) }')
        cpu_dt=$(cpu_avg "$OUT/$backend-$rate-top.txt" "$DT_PID")
        cpu_sink=$(cpu_avg "$OUT/$backend-$rate-top.txt" "$SINK_PID")
        verdict=pass
        awk -v a="$(field "$m" accepted_per_s)" -v r="$rate" 'BEGIN { exit !(a >= 0.99 * r) }' || verdict="FAIL(accepted/s)"
        awk -v a="$rate_s" -v r="$rate" 'BEGIN { exit !(a >= 0.99 * r) }' || verdict="FAIL(submits/s)"
        [ "$submits" -ge "$accepted" ] || verdict="FAIL(not all submitted)"
        [ "$(field "$s" receipt_resps)" -ge "$accepted" ] && [ "$delivered" -ge "$accepted" ] || verdict="FAIL(receipts unmatched)"
        awk -v p="$(field "$s" p99_ms)" -v l="$P99_LIMIT_MS" 'BEGIN { exit !(p != "nan" && p < l) }' || verdict="FAIL(p99)"
        echo "$backend rate=$rate accepted=$accepted accepted_per_s=$(field "$m" accepted_per_s) http_p99_ms=$(field "$m" p99_ms) submits=$submits submits_per_s=$rate_s peak_per_s=$(field "$s" peak_per_s) receipt_resps=$(field "$s" receipt_resps) receipt_errors=$(field "$s" receipt_errors) delivered=$delivered e2e_p50_ms=$(field "$s" p50_ms) e2e_p99_ms=$(field "$s" p99_ms) e2e_max_ms=$(field "$s" max_ms) cpu_dialtone=$cpu_dt cpu_sink=$cpu_sink verdict=$verdict" >>"$SUMMARY"
        log "$backend $rate/s: accepted $(field "$m" accepted_per_s)/s (HTTP p99 $(field "$m" p99_ms) ms), submits $rate_s/s, receipts OK $(field "$s" receipt_resps), delivered $delivered of $accepted, e2e p99 $(field "$s" p99_ms) ms, dialtone ${cpu_dt}% CPU: $verdict [$st]"
        [ "$verdict" = pass ] || break
    done
    cleanup
}

case "$WHICH" in
    all | sqlite | postgres | reference | postgres-inner) ;;
    *) echo "usage: $0 [all|sqlite|postgres|reference]" >&2; exit 2 ;;
esac

if [ "$WHICH" = postgres-inner ]; then
    # Run by scripts/with-postgres.sh below, with a fresh server's URL in the environment.
    bench_backend postgres "$DIALTONE_TEST_DATABASE_URL"
    exit 0
fi

echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), rates $RATES x ${STEP_S}s, $CONNECTIONS connections, $DESTINATIONS destinations, dialtone binds=$BINDS window=$WINDOW, client binds=$REF_BINDS window=$REF_WINDOW" >"$SUMMARY"
build
if [ "$WHICH" = all ] || [ "$WHICH" = reference ]; then reference; fi
if [ "$WHICH" = all ] || [ "$WHICH" = sqlite ]; then bench_backend sqlite ""; fi
if [ "$WHICH" = all ] || [ "$WHICH" = postgres ]; then
    # A throwaway server on loopback (fsync off, like SQLite's synchronous=NORMAL in WAL mode).
    OUT=$OUT SKIP_BUILD=1 "$ROOT/scripts/with-postgres.sh" "$HERE/sms.sh" postgres-inner
fi

# --- figures ------------------------------------------------------------------------------------
echo
echo "SMS benchmark ($(sed -n 1p "$SUMMARY" | cut -c3-))"
ref=$(grep '^reference-sink ' "$SUMMARY" || true)
npm=$(grep '^reference-npm ' "$SUMMARY" || true)
[ -n "$ref" ] && echo "  independent client (npm smpp, $REF_BINDS binds x $REF_WINDOW) -> smscsink: $(field "$ref" submits_per_s) submits/s, $(field "$ref" receipts) receipts of $(field "$ref" accepted)"
[ -n "$npm" ] && echo "  independent client -> npm smpp SMSC (tests/smsc/smsc.js): $(field "$npm" submits_per_s) submits/s, $(field "$npm" receipts) receipts of $(field "$npm" accepted)"
printf '  %-8s %6s %11s %9s %10s %10s %12s %9s %9s %5s  %s\n' backend rate "accepted/s" "HTTP p99" submits/s delivered "of accepted" "e2e p50" "e2e p99" "CPU%" verdict
RESULT=""
for backend in sqlite postgres; do
    best=0
    while read -r b rest; do
        [ "$b" = "$backend" ] || continue
        r=$(field "$rest" rate)
        printf '  %-8s %6s %11s %9s %10s %10s %12s %9s %9s %5s  %s\n' "$b" "$r" "$(field "$rest" accepted_per_s)" \
            "$(field "$rest" http_p99_ms)" "$(field "$rest" submits_per_s)" "$(field "$rest" delivered)" \
            "$(field "$rest" accepted)" "$(field "$rest" e2e_p50_ms)" "$(field "$rest" e2e_p99_ms)" \
            "$(field "$rest" cpu_dialtone)" "$(field "$rest" verdict)"
        [ "$(field "$rest" verdict)" = pass ] && best=$r
    done < <(grep -v '^#' "$SUMMARY")
    grep -q "^$backend " "$SUMMARY" && RESULT="$RESULT ${backend}_msgs_per_s=$best"
done
if [ -n "$ref" ]; then
    RESULT="$RESULT reference_submits_per_s=$(field "$ref" submits_per_s)"
    for backend in sqlite postgres; do
        best=$(sed -n "s/.*${backend}_msgs_per_s=\([0-9]*\).*/\1/p" <<<"$RESULT")
        [ -n "$best" ] && RESULT="$RESULT ${backend}_ratio=$(awk -v a="$best" -v b="$(field "$ref" submits_per_s)" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
    done
fi
[ -n "$npm" ] && RESULT="$RESULT npm_smsc_submits_per_s=$(field "$npm" submits_per_s)"
echo "  raw results: $OUT"
echo "SMS_RESULT${RESULT}"
