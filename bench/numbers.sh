#!/usr/bin/env bash
# Numbers at scale (issue 12): COUNT numbers (10 million by default) on one node.
#   - the routing index: resident memory per number (RSS growth over the load / COUNT), and the
#     lookup time p50/p99 of random stored numbers (`dialtone bench-numbers --measure`, which
#     loads the index as a start does and times each `Routing::find`, the record built);
#   - start time: `dialtone serve` from spawn to its HTTP port answering (the index is loaded
#     before the HTTP and SIP listeners serve), on SQLite and on PostgreSQL;
#   - creation through the API on top of COUNT numbers: POST IncomingPhoneNumbers.json, a distinct
#     number per request, wrk with CONNECTIONS clients (bench/api.lua); and Bulk.json, BULK_LINES
#     numbers per request, BULK_REQUESTS requests one after the other;
#   - a list page (PageSize=50, and the PhoneNumber filter of one number) at that size.
# Prints one line:
#   NUMBERS_RESULT count=.. sqlite_fill_s=.. index_bytes_per_number=.. lookup_p50_ns=..
#   lookup_p99_ns=.. start_sqlite_s=.. start_postgres_s=.. create_rps=.. create_p99_ms=..
#   bulk_per_s=.. list_ms=.. filter_ms=..
#
#   bench/numbers.sh                     # 10 million, SQLite then PostgreSQL
#   COUNT=1000000 bench/numbers.sh       # a shorter run
#   BACKENDS=sqlite bench/numbers.sh
#
# The databases (2-4 GB each at 10 million) live in a temporary directory removed on exit.
# Everything binds to 127.0.0.1; everything started here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

COUNT=${COUNT:-10000000}
BACKENDS=${BACKENDS:-"sqlite postgres"}
LOOKUPS=${LOOKUPS:-1000000}
DURATION_S=${DURATION_S:-10}
CONNECTIONS=${CONNECTIONS:-32}
BULK_LINES=${BULK_LINES:-100000}
BULK_REQUESTS=${BULK_REQUESTS:-5}
HTTP_PORT=${HTTP_PORT:-18280}
SIP_PORT=${SIP_PORT:-15280}
ACCOUNT_SID=${ACCOUNT_SID:-AC0123456789abcdef0123456789abcdef}
AUTH_TOKEN=${AUTH_TOKEN:-benchbenchbenchbenchbenchbench12}
TMP_PARENT=${TMP_PARENT:-/work}

log() { echo "[numbers] $*" >&2; }

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { log "missing: $tool (apt-get install -y $tool)"; exit 1; }
done

DIALTONE=${DIALTONE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/dialtone}
if [ ! -x "$DIALTONE" ]; then
    log "building dialtone (release)"
    cargo build --quiet --release -p dialtone --manifest-path "$ROOT/Cargo.toml"
fi

TMP=$(mktemp -d "$TMP_PARENT/dialtone-numbers.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$pid" 2>/dev/null || true
    done
    PIDS=()
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { # LINE KEY
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}
now() { date +%s.%N; }
AUTH_B64=$(printf '%s:%s' "$ACCOUNT_SID" "$AUTH_TOKEN" | base64 -w0)
API="http://127.0.0.1:$HTTP_PORT/2010-04-01/Accounts/$ACCOUNT_SID"

# serve DATABASE_URL: starts dialtone on it; sets STARTED_S to the seconds from spawn to HTTP
# answering. (Not in a subshell: the server's pid must reach PIDS for the cleanup.)
serve() {
    local data=$TMP/data-$RANDOM started
    mkdir -p "$data"
    if curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/metrics"; then
        log "something already answers on 127.0.0.1:$HTTP_PORT"
        return 1
    fi
    started=$(now)
    DIALTONE_DATABASE_URL=$1 DIALTONE_HTTP_ADDR=127.0.0.1:$HTTP_PORT DIALTONE_SIP_ADDR=127.0.0.1:$SIP_PORT \
        DIALTONE_RTP_PORTS=40000-40099 DIALTONE_DATA_DIR=$data DIALTONE_ACCOUNT_SID=$ACCOUNT_SID \
        DIALTONE_AUTH_TOKEN=$AUTH_TOKEN DIALTONE_LOG=warn,node::wiring=info \
        "$DIALTONE" serve >"$TMP/serve.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 1200); do
        if curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/metrics"; then
            STARTED_S=$(echo "$started $(now)" | awk '{ printf "%.2f", $2 - $1 }')
            return 0
        fi
        sleep 0.05
    done
    log "dialtone did not start: $(tail -5 "$TMP/serve.log")"
    return 1
}

stop_serve() {
    cleanup_pids=("${PIDS[@]}")
    for pid in "${cleanup_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

# api_rates: single creates (wrk) and bulk creates (curl) against the running server.
api_rates() {
    local out=$TMP/wrk.txt line bulk body started elapsed i
    env API_MODE=create API_ACCOUNT="$ACCOUNT_SID" API_AUTH="$AUTH_B64" API_RUN=1 \
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION_S}s" --latency -s "$HERE/api.lua" \
        "http://127.0.0.1:$HTTP_PORT" >"$out" 2>&1 || true
    line=$(grep '^WRK_RESULT' "$out" || echo "WRK_RESULT rps=0 p99_ms=na non2xx=na")
    CREATE_RPS=$(field "$line" rps)
    CREATE_P99=$(field "$line" p99_ms)
    log "single creates: $CREATE_RPS/s, p99 $CREATE_P99 ms, non-2xx $(field "$line" non2xx)"
    # Bulk: +1 9xx numbers, none of the fill's (+1 2xxxxxxxxx) nor wrk's (+1 [2-9]xx by run).
    started=$(now)
    for i in $(seq 1 "$BULK_REQUESTS"); do
        body=$TMP/bulk-$i.txt
        awk -v n="$BULK_LINES" -v r="$i" 'BEGIN { for (k = 0; k < n; k++) printf "+1%03d%07d\n", 900 + r, k }' >"$body"
    done
    started=$(now)
    for i in $(seq 1 "$BULK_REQUESTS"); do
        curl -fsS -u "$ACCOUNT_SID:$AUTH_TOKEN" -H 'Content-Type: text/plain' --data-binary "@$TMP/bulk-$i.txt" \
            "$API/IncomingPhoneNumbers/Bulk.json?VoiceUrl=http%3A%2F%2F127.0.0.1%2Fvoice" >"$TMP/bulk-$i.json" || log "bulk request $i failed"
    done
    elapsed=$(echo "$started $(now)" | awk '{ print $2 - $1 }')
    bulk=$(cat "$TMP"/bulk-*.json | grep -o '"created":[0-9]*' | cut -d: -f2 | paste -sd+ | bc)
    BULK_PER_S=$(echo "$bulk $elapsed" | awk '{ printf "%.0f", $1 / $2 }')
    log "bulk: $bulk numbers in ${elapsed} s ($BULK_PER_S/s)"
    started=$(now)
    curl -fsS -u "$ACCOUNT_SID:$AUTH_TOKEN" "$API/IncomingPhoneNumbers.json?PageSize=50" -o /dev/null
    LIST_MS=$(echo "$started $(now)" | awk '{ printf "%.1f", ($2 - $1) * 1000 }')
    started=$(now)
    curl -fsS -u "$ACCOUNT_SID:$AUTH_TOKEN" "$API/IncomingPhoneNumbers.json?PhoneNumber=%2B12004000000" -o /dev/null
    FILTER_MS=$(echo "$started $(now)" | awk '{ printf "%.1f", ($2 - $1) * 1000 }')
    log "list page: $LIST_MS ms; PhoneNumber filter: $FILTER_MS ms"
}

SQLITE_FILL=na BYTES=na P50=na P99=na START_SQLITE=na START_PG=na PG_FILL=na PG_LOAD=na PG_BYTES=na
CREATE_RPS=na CREATE_P99=na BULK_PER_S=na LIST_MS=na FILTER_MS=na

for backend in $BACKENDS; do
    case $backend in
    sqlite)
        url="sqlite://$TMP/numbers.sqlite"
        log "sqlite: filling $COUNT numbers"
        line=$("$DIALTONE" bench-numbers --database "$url" --account "$ACCOUNT_SID" --fill "$COUNT" | grep '^BENCH_FILL')
        SQLITE_FILL=$(field "$line" seconds)
        log "sqlite: filled in $SQLITE_FILL s ($(du -sh "$TMP" | cut -f1) on disk); measuring the index"
        line=$("$DIALTONE" bench-numbers --database "$url" --measure "$LOOKUPS" | grep '^BENCH_NUMBERS')
        log "$line"
        BYTES=$(field "$line" bytes_per_number)
        P50=$(field "$line" lookup_p50_ns)
        P99=$(field "$line" lookup_p99_ns)
        serve "$url"
        START_SQLITE=$STARTED_S
        log "sqlite: serve ready in $START_SQLITE s ($(grep -o 'seconds=[0-9.]*' "$TMP/serve.log" | head -1) loading the index)"
        api_rates
        stop_serve
        rm -f "$TMP"/numbers.sqlite*
        ;;
    postgres)
        # The same steps against a throwaway PostgreSQL (scripts/with-postgres.sh), this script
        # running again inside it as the `postgres-inner` backend.
        log "postgres: filling $COUNT numbers"
        line=$(BACKENDS=postgres-inner TMP_PARENT=$TMP DIALTONE=$DIALTONE "$ROOT/scripts/with-postgres.sh" \
            bash "$0" | grep '^NUMBERS_PG' || echo "NUMBERS_PG")
        PG_FILL=$(field "$line" fill_s)
        PG_LOAD=$(field "$line" load_s)
        START_PG=$(field "$line" start_s)
        PG_BYTES=$(field "$line" bytes_per_number)
        log "postgres: filled in $PG_FILL s, index load $PG_LOAD s, serve ready in $START_PG s"
        ;;
    postgres-inner)
        url=$DIALTONE_TEST_DATABASE_URL
        line=$("$DIALTONE" bench-numbers --database "$url" --account "$ACCOUNT_SID" --fill "$COUNT" | grep '^BENCH_FILL')
        fill=$(field "$line" seconds)
        line=$("$DIALTONE" bench-numbers --database "$url" --measure "$LOOKUPS" | grep '^BENCH_NUMBERS')
        log "$line"
        serve "$url"
        start=$STARTED_S
        log "postgres: serve ready in $start s ($(grep -o 'seconds=[0-9.]*' "$TMP/serve.log" | head -1) loading the index)"
        stop_serve
        echo "NUMBERS_PG fill_s=$fill load_s=$(field "$line" load_s) start_s=$start" \
            "bytes_per_number=$(field "$line" bytes_per_number) p50_ns=$(field "$line" lookup_p50_ns)" \
            "p99_ns=$(field "$line" lookup_p99_ns)"
        exit 0
        ;;
    esac
done

echo "NUMBERS_RESULT count=$COUNT sqlite_fill_s=$SQLITE_FILL index_bytes_per_number=$BYTES lookup_p50_ns=$P50" \
    "lookup_p99_ns=$P99 start_sqlite_s=$START_SQLITE postgres_fill_s=$PG_FILL postgres_load_s=$PG_LOAD" \
    "start_postgres_s=$START_PG postgres_index_bytes_per_number=$PG_BYTES" \
    "create_rps=$CREATE_RPS create_p99_ms=$CREATE_P99 bulk_per_s=$BULK_PER_S list_ms=$LIST_MS filter_ms=$FILTER_MS"
