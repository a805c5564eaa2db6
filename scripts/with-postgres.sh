#!/usr/bin/env bash
# Runs CMD... against a throwaway PostgreSQL server:
#   scripts/with-postgres.sh cargo test -p store -p api
#
# Starts a fresh cluster in a temporary directory (Debian's postgresql package, installed if
# missing), listening on 127.0.0.1 only at a free port, with its unix socket inside that directory.
# CMD runs with DIALTONE_TEST_DATABASE_URL=postgres://...@127.0.0.1:PORT/dialtone_test; the server
# is stopped and the directory removed when this script exits, whether CMD passed, failed or was
# interrupted. Exits with CMD's status.
#
# PostgreSQL refuses to run as root: as root the server runs as the `postgres` system user (made by
# the package, or here if missing) and CMD runs as root. The server is built for tests, not data:
# fsync is off.
set -euo pipefail

log() { echo "with-postgres: $*" >&2; }

if [ "$#" -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

find_bindir() {
    local d
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        d=$(dirname "$(readlink -f "$(command -v initdb)")")
        [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    fi
    # Debian keeps the server binaries off PATH, one directory per major version: take the newest.
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    return 1
}

if ! BIN=$(find_bindir); then
    [ "$(id -u)" -eq 0 ] || { log "initdb not found and not root: install postgresql"; exit 1; }
    log "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN=$(find_bindir) || { log "postgresql installed but initdb not found"; exit 1; }
fi

# Who runs the server: ourselves, or as root the postgres system user.
as_server() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin postgres
    fi
    as_server() { runuser -u postgres -- "$@"; }
fi

ms() { echo $(( $(date +%s%N) / 1000000 )); }
started=$(ms)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dialtone-pg.XXXXXX")
PGDATA_DIR="$TMP/data"
SOCK="$TMP/sock"
mkdir "$SOCK"
[ "$(id -u)" -eq 0 ] && chown -R postgres: "$TMP"

stop_server() {
    local status=$? t0
    t0=$(ms)
    if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
        (cd "$TMP" && as_server "$BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null) \
            || log "pg_ctl stop failed (see $TMP/server.log)"
    fi
    rm -rf "$TMP"
    log "server stopped and removed in $(( $(ms) - t0 )) ms"
    exit "$status"
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$PASSWORD" >"$TMP/pwfile"
[ "$(id -u)" -eq 0 ] && chown postgres: "$TMP/pwfile"
# Password auth over TCP; local socket connections only for the server's own user. The password is
# stored as md5 below, not SCRAM: SCRAM's 4096 hash rounds in a debug build of the tests' client
# cost ~40 ms per connection, several times what the tests themselves take.
(cd "$TMP" && as_server "$BIN/initdb" -D "$PGDATA_DIR" --username=dialtone --pwfile="$TMP/pwfile" \
    --auth-host=md5 --auth-local=peer --encoding=UTF8 --locale=C --no-sync >"$TMP/initdb.log") \
    || { cat "$TMP/initdb.log" >&2; exit 1; }
rm -f "$TMP/pwfile"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PORT=
for _ in 1 2 3 4 5 6 7 8; do
    candidate=$((20000 + RANDOM % 40000))
    port_in_use "$candidate" && continue
    # -w: return once the server accepts connections. A port taken since the check above makes
    # the start fail; then try another.
    if (cd "$TMP" && as_server "$BIN/pg_ctl" -D "$PGDATA_DIR" -l "$TMP/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $candidate -k $SOCK -c fsync=off -c full_page_writes=off -c max_connections=200 ${PG_SERVER_OPTS:-}" \
        start >/dev/null); then
        PORT=$candidate
        break
    fi
done
if [ -z "$PORT" ]; then
    log "the server did not start:"
    cat "$TMP/server.log" >&2 || true
    exit 1
fi

BASE="postgres://dialtone:$PASSWORD@127.0.0.1:$PORT"
(cd "$TMP" && PGPASSWORD=$PASSWORD "$BIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" \
    -U dialtone -d postgres -c "SET password_encryption = 'md5'" \
    -c "ALTER ROLE dialtone PASSWORD '$PASSWORD'" -c "CREATE DATABASE dialtone_test") >&2
log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT ready in $(( $(ms) - started )) ms"

export DIALTONE_TEST_DATABASE_URL="$BASE/dialtone_test"
# In the background so that a signal to this script is handled at once (bash runs traps only
# between foreground commands): it is passed on to CMD, and the server stops once CMD has ended.
# `<&0` keeps CMD's standard input, which a background command would otherwise lose.
"$@" <&0 &
child=$!
forward() { kill "-$1" "$child" 2>/dev/null || true; wait "$child" 2>/dev/null || true; exit "$2"; }
trap 'forward INT 130' INT
trap 'forward TERM 143' TERM
set +e
wait "$child"
status=$?
set -e
exit "$status"
