#!/usr/bin/env bash
# REST API throughput: requests per second and latency (p50/p99) of `dialtone serve` under wrk,
# on SQLite and on PostgreSQL, with 100,000 calls stored:
#   fetch         GET Calls/{CallSid}.json, a random stored call per request
#   list-first    GET Calls.json?PageSize=50
#   list-deep     GET the next_page_uri of pages 100, 200, ... 1000 (rows 5,000 to 50,000), in turn
#   create-number POST IncomingPhoneNumbers.json, a distinct number per request
# Every request authenticates with HTTP Basic (account SID + auth token). Then the same fetch
# request mix against a static axum responder (`sipload webhook`), as the ceiling of the HTTP
# stack and load generator on this machine.
#
# Two kinds of runs:
# - capacity: wrk, closed loop, CONNECTIONS connections each sending as soon as its answer is in.
#   It finds the most requests per second; its latency is that of a saturated server (every
#   request queues behind the 15 others), so it gets no verdict.
# - at the target rate: oha, open loop, fetches at FETCH_TARGET/s and creations at
#   CREATE_TARGET/s, each latency counted from when the request was due (`--latency-correction`,
#   so a stall is charged to every request it delays). These runs give the verdicts.
#
#   bench/api.sh                 # sqlite, postgres, reference
#   bench/api.sh sqlite          # one part only (or: postgres, reference)
#   DURATION_S=5 CONNECTIONS=32 bench/api.sh
#
# Targets (issue 4): fetch >= 5,000/s and create-number >= 1,000/s, each with p99 < 20 ms.
# oha (crates.io) is built once into bench/.tools when it is not on the PATH (about 7 minutes).
# Everything binds to 127.0.0.1; everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WHICH=${1:-all}

DURATION_S=${DURATION_S:-10}       # seconds of load per scenario
WARMUP_S=${WARMUP_S:-2}            # seconds of the same load first, not counted
CONNECTIONS=${CONNECTIONS:-16}     # wrk connections (closed loop: each waits for its answer)
THREADS=${THREADS:-1}              # wrk threads (2 cores: the rest is for the server)
CALLS=${CALLS:-100000}             # calls stored before the runs
DEEP_PAGES=${DEEP_PAGES:-"100 200 300 400 500 600 700 800 900 1000"}
FETCH_TARGET=${FETCH_TARGET:-5000}
CREATE_TARGET=${CREATE_TARGET:-1000}
P99_LIMIT_MS=${P99_LIMIT_MS:-20}
RATE_S=${RATE_S:-10}               # seconds of each fixed-rate run (after WARMUP_S at the rate)
OHA_VERSION=1.16.0
HTTP_PORT=${HTTP_PORT:-18180}
SIP_PORT=${SIP_PORT:-15180}
REF_PORT=${REF_PORT:-18188}
ACCOUNT_SID=${ACCOUNT_SID:-AC0123456789abcdef0123456789abcdef}
AUTH_TOKEN=${AUTH_TOKEN:-benchbenchbenchbenchbenchbench12}
# A scheduling prefix for the server and the generator on a shared machine (see cps.sh).
BENCH_PRIO=${BENCH_PRIO:-}
# shellcheck disable=SC2206 # word splitting of the prefix is intended
RUN=($BENCH_PRIO)

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$HERE/results/api-$STAMP}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt

log() { echo "[api] $*" >&2; }

# --- tools ----------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { log "missing: ${missing[*]} (apt-get install -y ${missing[*]})"; exit 1; }
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
OHA=${OHA:-$(command -v oha || echo "$HERE/.tools/bin/oha")}
if [ ! -x "$OHA" ]; then
    log "building oha $OHA_VERSION into $HERE/.tools (once)"
    cargo install --quiet --locked --root "$HERE/.tools" "oha@$OHA_VERSION" >&2
    OHA=$HERE/.tools/bin/oha
fi

DIALTONE=${DIALTONE:-${DIALTONE_TARGET:-$ROOT/target}/release/dialtone}
build_dialtone() {
    if [ ! -x "$DIALTONE" ]; then
        log "building dialtone (release)"
        CARGO_TARGET_DIR=${DIALTONE_TARGET:-$ROOT/target} cargo build --quiet --release -p dialtone \
            --manifest-path "$ROOT/Cargo.toml"
    fi
}

PIDS=()
TMPS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
    local d
    for d in "${TMPS[@]}"; do rm -rf "$d"; done
    TMPS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

AUTH_B64=$(printf '%s:%s' "$ACCOUNT_SID" "$AUTH_TOKEN" | base64 -w0)
API="http://127.0.0.1:$HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID"

field() { # LINE KEY
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

# run_wrk BACKEND SCENARIO MODE URL [ENV...]: one warm-up and one measured run; appends a line
# to the summary and prints it.
# Numbers the runs, so each create-number run uses numbers of its own (see api.lua).
RUN_NO=${API_RUN_BASE:-0}
run_wrk() {
    local backend=$1 scenario=$2 mode=$3 url=$4
    shift 4
    local line
    RUN_NO=$((RUN_NO + 1))
    if [ "$WARMUP_S" -gt 0 ]; then
        env API_MODE="$mode" API_ACCOUNT="$ACCOUNT_SID" API_AUTH="$AUTH_B64" API_CALLS="$CALLS" \
            API_RUN="$RUN_NO" "$@" "${RUN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP_S}s" \
            -s "$HERE/api.lua" "$url" >"$OUT/$backend-$scenario-warmup.txt" 2>&1 || true
        RUN_NO=$((RUN_NO + 1))
    fi
    env API_MODE="$mode" API_ACCOUNT="$ACCOUNT_SID" API_AUTH="$AUTH_B64" API_CALLS="$CALLS" \
        API_RUN="$RUN_NO" "$@" "${RUN[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION_S}s" \
        --latency -s "$HERE/api.lua" "$url" >"$OUT/$backend-$scenario.txt" 2>&1 || true
    line=$(grep '^WRK_RESULT' "$OUT/$backend-$scenario.txt" || true)
    [ -n "$line" ] || { log "$backend $scenario: wrk gave no result, see $OUT/$backend-$scenario.txt"; line="WRK_RESULT rps=0 p50_ms=na p99_ms=na errors=na non2xx=na"; }
    echo "$backend $scenario ${line#WRK_RESULT }" >>"$SUMMARY"
    log "$backend $scenario: $(field "$line" rps) req/s, p50 $(field "$line" p50_ms) ms, p99 $(field "$line" p99_ms) ms, errors $(field "$line" errors), non-2xx $(field "$line" non2xx)"
}

# run_rate BACKEND SCENARIO RATE OHA-ARGS...: WARMUP_S then RATE_S seconds of oha at RATE
# requests per second (open loop, 64 connections at most); appends a summary line as run_wrk
# does. Latencies are of the successful answers; `non2xx` counts the others.
run_rate() {
    local backend=$1 scenario=$2 rate=$3
    shift 3
    local json=$OUT/$backend-$scenario-at-$rate.json line
    local oha=("${RUN[@]}" "$OHA" --no-tui -w -c 64 -q "$rate" --latency-correction
        -a "$ACCOUNT_SID:$AUTH_TOKEN" --stats-success-breakdown --output-format json)
    if [ "$WARMUP_S" -gt 0 ]; then
        "${oha[@]}" -z "${WARMUP_S}s" "$@" >"$OUT/$backend-$scenario-at-$rate-warmup.json" 2>&1 || true
    fi
    "${oha[@]}" -z "${RATE_S}s" "$@" >"$json" 2>"$json.err" || true
    line=$(python3 - "$json" "$scenario" <<'PY' || true
import json, sys
d = json.load(open(sys.argv[1]))
ok = d.get("latencyPercentilesSuccessful") or d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
good = sum(n for c, n in codes.items() if c.startswith("2"))
# A creation's 400 is a number drawn twice (see write_create_bodies): counted apart, and judged
# against how many such draws to expect.
twice = codes.get("400", 0) if sys.argv[2] == "create-number" else 0
errors = sum(d.get("errorDistribution", {}).values())
secs = d["summary"]["total"]
ms = lambda v: "na" if v is None else "%.2f" % (v * 1000)
print("WRK_RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s errors=%d non2xx=%d drawn_twice=%d"
      % (good, secs, good / secs, ms(ok.get("p50")), ms(ok.get("p90")), ms(ok.get("p99")),
         ms(d["summary"].get("slowest")), errors, sum(codes.values()) - good - twice, twice))
PY
)
    [ -n "$line" ] || { log "$backend $scenario at $rate/s: oha gave no result, see $json.err"; line="WRK_RESULT rps=0 p50_ms=na p99_ms=na errors=na non2xx=na"; }
    echo "$backend $scenario@$rate ${line#WRK_RESULT }" >>"$SUMMARY"
    log "$backend $scenario at $rate/s: $(field "$line" rps) ok/s, p50 $(field "$line" p50_ms) ms, p99 $(field "$line" p99_ms) ms, errors $(field "$line" errors), non-2xx $(field "$line" non2xx), drawn twice $(field "$line" drawn_twice)"
}

# The bodies of the fixed-rate creations: oha draws each request's body at random from these
# lines, so there are 200 for every request it sends; the few numbers drawn twice get 400
# (21422, already in use), counted apart. +44 20 numbers: none of wrk's creations use them.
write_create_bodies() { # FILE RUN
    local n=$(( (WARMUP_S + RATE_S) * CREATE_TARGET * 200 ))
    awk -v n="$n" -v run="$2" 'BEGIN { for (i = 0; i < n; i++)
        printf "PhoneNumber=%%2B4420%d%07d&VoiceUrl=http%%3A%%2F%%2F127.0.0.1%%2Fvoice\n", run, i }' >"$1"
}

start_dialtone() { # BACKEND DATABASE_URL(empty: SQLite in the data dir)
    local backend=$1 url=$2 data
    data=$(mktemp -d "${TMPDIR:-/tmp}/dialtone-apibench.XXXXXX")
    TMPS+=("$data")
    DATA_DIR=$data
    env DIALTONE_HTTP_ADDR="127.0.0.1:$HTTP_PORT" DIALTONE_SIP_ADDR="127.0.0.1:$SIP_PORT" \
        DIALTONE_RTP_PORTS=40000-40099 DIALTONE_DATA_DIR="$data" ${url:+DIALTONE_DATABASE_URL="$url"} \
        DIALTONE_ACCOUNT_SID="$ACCOUNT_SID" DIALTONE_AUTH_TOKEN="$AUTH_TOKEN" \
        DIALTONE_LOG="${DIALTONE_LOG:-warn}" "${RUN[@]}" "$DIALTONE" serve >"$OUT/$backend-dialtone.log" 2>&1 &
    DT_PID=$!
    PIDS+=("$DT_PID")
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' -u "$ACCOUNT_SID:$AUTH_TOKEN" "$API.json" || true)" = 200 ] && return 0
        kill -0 "$DT_PID" 2>/dev/null || break
        sleep 0.2
    done
    log "dialtone did not come up; see $OUT/$backend-dialtone.log"
    tail -20 "$OUT/$backend-dialtone.log" >&2
    exit 1
}

# The seeded calls: CA + row number in 32 hex digits, 1 ms apart, newest last; completed inbound
# calls of 30 s. Only the columns of the first migration are named, so later migrations' columns
# (which must have defaults) take theirs.
seed_sql() { # sqlite|postgres
    local sid rows
    if [ "$1" = sqlite ]; then
        sid="printf('CA%032x', n)"
        rows="WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < $CALLS) SELECT"
    else
        sid="'CA' || lpad(to_hex(n), 32, '0')"
        rows="SELECT"
    fi
    local from="FROM seq"
    [ "$1" = postgres ] && from="FROM generate_series(1, $CALLS) AS seq(n)"
    local t0=$(( ($(date +%s) - CALLS / 1000 - 3600) * 1000000 ))
    cat <<SQL
BEGIN;
INSERT INTO calls (sid, account_sid, parent_call_sid, phone_number_sid, from_address, to_address,
    status, direction, start_time, end_time, duration, answered_by, date_created, date_updated)
$rows $sid, '$ACCOUNT_SID', NULL, NULL, '+1555' || (1000000 + n), '+15550001000',
    'completed', 'inbound', $t0 + n * 1000, $t0 + n * 1000 + 30000000, 30, NULL,
    $t0 + n * 1000, $t0 + n * 1000 + 30000000
$from;
COMMIT;
ANALYZE;
SQL
}

# Checks the seed through the API, and writes the deep-page URIs by following next_page_uri.
prepare_lists() { # BACKEND
    local backend=$1 n code body next page=0 want
    code=$(curl -s -o "$OUT/$backend-fetch-check.json" -w '%{http_code}' -u "$ACCOUNT_SID:$AUTH_TOKEN" \
        "$API/Calls/CA$(printf '%032x' "$CALLS").json")
    [ "$code" = 200 ] || { log "fetching a seeded call gave $code: $(cat "$OUT/$backend-fetch-check.json")"; exit 1; }
    : >"$OUT/$backend-deep-uris.txt"
    next="/2010-04-01/Accounts/$ACCOUNT_SID/Calls.json?PageSize=50"
    local last=${DEEP_PAGES##* }
    while [ "$page" -lt "$last" ]; do
        body=$(curl -sf -u "$ACCOUNT_SID:$AUTH_TOKEN" "http://127.0.0.1:$HTTP_PORT$next") \
            || { log "paging failed at page $page"; exit 1; }
        next=$(sed -n 's/.*"next_page_uri":"\([^"]*\)".*/\1/p' <<<"$body")
        [ -n "$next" ] || { log "no next_page_uri after page $page"; exit 1; }
        page=$((page + 1))
        for want in $DEEP_PAGES; do
            if [ "$page" = "$want" ]; then echo "$next" >>"$OUT/$backend-deep-uris.txt"; fi
        done
    done
    n=$(grep -c . "$OUT/$backend-deep-uris.txt")
    log "$backend: $n deep-page URIs (pages $DEEP_PAGES), e.g. $(head -1 "$OUT/$backend-deep-uris.txt")"
}

bench_backend() { # BACKEND DATABASE_URL
    local backend=$1 url=$2 t0
    start_dialtone "$backend" "$url"
    t0=$(date +%s%N)
    if [ "$backend" = sqlite ]; then
        seed_sql sqlite | sqlite3 -bail "$DATA_DIR/dialtone.db" >/dev/null
    else
        seed_sql postgres | psql -q -v ON_ERROR_STOP=1 "$url" >/dev/null
    fi
    log "$backend: seeded $CALLS calls in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    prepare_lists "$backend"
    run_wrk "$backend" fetch fetch "$API/Calls/CA1.json"
    echo "/2010-04-01/Accounts/$ACCOUNT_SID/Calls.json?PageSize=50" >"$OUT/$backend-first-uri.txt"
    run_wrk "$backend" list-first list "$API/Calls.json" API_URIS="$OUT/$backend-first-uri.txt"
    run_wrk "$backend" list-deep list "$API/Calls.json" API_URIS="$OUT/$backend-deep-uris.txt"
    run_wrk "$backend" create-number create "$API/IncomingPhoneNumbers.json"
    # At the target rates: a random one of 32,768 seeded calls (CA...10000 to CA...17fff).
    run_rate "$backend" fetch "$FETCH_TARGET" --rand-regex-url \
        "$API/Calls/CA0{27}1[0-7][0-9a-f]{3}[.]json"
    write_create_bodies "$OUT/$backend-create-bodies.txt" "$((RUN_NO % 10))"
    run_rate "$backend" create-number "$CREATE_TARGET" -m POST -T application/x-www-form-urlencoded \
        -Z "$OUT/$backend-create-bodies.txt" "$API/IncomingPhoneNumbers.json"
    rm -f "$OUT/$backend-create-bodies.txt"
    cleanup
}

[ "$WHICH" = postgres-inner ] || echo "# $(date -Is) $(nproc) cpus, load average $(cut -d' ' -f1-3 /proc/loadavg), wrk -t$THREADS -c$CONNECTIONS ${DURATION_S}s, $CALLS calls, BENCH_PRIO=${BENCH_PRIO:-none}" >"$SUMMARY"

case "$WHICH" in
    all | sqlite | postgres | reference | postgres-inner) ;;
    *) echo "usage: $0 [all|sqlite|postgres|reference]" >&2; exit 2 ;;
esac

if [ "$WHICH" = postgres-inner ]; then
    # Run by scripts/with-postgres.sh below, with a fresh server's URL in the environment.
    build_dialtone
    bench_backend postgres "$DIALTONE_TEST_DATABASE_URL"
    exit 0
fi

if [ "$WHICH" = all ] || [ "$WHICH" = sqlite ]; then
    build_dialtone
    bench_backend sqlite ""
fi

if [ "$WHICH" = all ] || [ "$WHICH" = postgres ]; then
    build_dialtone
    # A throwaway server on loopback (fsync off: it measures the API, not the disk; SQLite's
    # synchronous=NORMAL in WAL mode does not fsync per commit either).
    OUT=$OUT API_RUN_BASE=100 "$ROOT/scripts/with-postgres.sh" "$HERE/api.sh" postgres-inner
fi

if [ "$WHICH" = all ] || [ "$WHICH" = reference ]; then
    BENCH_TARGET=${BENCH_TARGET:-${CARGO_TARGET_DIR:-$HERE/target}}
    CARGO_TARGET_DIR=$BENCH_TARGET cargo build --quiet --release --locked --manifest-path "$HERE/Cargo.toml"
    # As many runtime threads as Dialtone's (one per core).
    "${RUN[@]}" "$BENCH_TARGET/release/sipload" webhook --listen "127.0.0.1:$REF_PORT" \
        --threads "$(nproc)" --twiml '{"sid":"CA1"}' >"$OUT/reference.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$REF_PORT/" && break; sleep 0.2; done
    API="http://127.0.0.1:$REF_PORT/2010-04-01/Accounts/$ACCOUNT_SID"
    run_wrk reference fetch fetch "$API/Calls/CA1.json"
    cleanup
fi

# --- figures ----------------------------------------------------------------------------------
verdict() { # SCENARIO RPS P99
    local target=
    # Only the fixed-rate runs (SCENARIO@RATE) are judged; 1 % under the rate is oha's own jitter.
    case "$1" in fetch@*) target=$FETCH_TARGET ;; create-number@*) target=$CREATE_TARGET ;; esac
    [ -n "$target" ] || { echo "capacity"; return; }
    if awk -v r="$2" -v t="$target" -v p="$3" -v l="$P99_LIMIT_MS" 'BEGIN { exit !(r >= 0.99 * t && p != "na" && p < l) }'; then
        echo "pass (>= $target/s, p99 < $P99_LIMIT_MS ms)"
    else
        echo "FAIL (target >= $target/s, p99 < $P99_LIMIT_MS ms)"
    fi
}

echo
echo "REST API benchmark ($(sed -n 1p "$SUMMARY" | cut -c3-))"
printf '  %-10s %-20s %10s %9s %9s %8s  %s\n' backend scenario "req/s" "p50 ms" "p99 ms" errors verdict
status=0
RESULT=""
while read -r backend scenario rest; do
    rps=$(field "$rest" rps); p50=$(field "$rest" p50_ms); p99=$(field "$rest" p99_ms)
    errs=$(( $(field "$rest" errors | sed 's/na/0/') + $(field "$rest" non2xx | sed 's/na/0/') ))
    v=$(verdict "$scenario" "$rps" "$p99")
    [ "${v%% *}" = FAIL ] && status=1
    [ "$errs" -gt 0 ] && [ "$backend" != reference ] && { v="$v; $errs errors"; status=1; }
    twice=$(field "$rest" drawn_twice)
    if [ -n "$twice" ] && [ "$twice" -gt 0 ]; then
        # Expected: requests^2 / (2 * lines), about 0.25 % of the requests; 1 % means more than chance.
        if [ "$twice" -gt $(( $(field "$rest" requests) / 100 )) ]; then v="$v; $twice answered 400"; status=1
        else v="$v ($twice numbers drawn twice)"; fi
    fi
    printf '  %-10s %-20s %10s %9s %9s %8s  %s\n' "$backend" "$scenario" "$rps" "$p50" "$p99" "$errs" "$v"
    key=${scenario//-/_}
    key=${key//@/_at_}
    RESULT="$RESULT ${backend}_${key}_rps=$rps ${backend}_${key}_p99_ms=$p99"
done < <(grep -v '^#' "$SUMMARY")
echo "  raw results: $OUT"
echo "API_RESULT${RESULT}"
exit $status
