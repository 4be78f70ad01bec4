#!/usr/bin/env bash
# The scale-out configuration's services for tests, on loopback only: PostgreSQL 15 (Debian's
# initdb + pg_ctl in a temporary directory, trust auth, fsync off) and an S3-compatible store
# (moto_server), each on a free 127.0.0.1 port. Both stop when the caller exits.
#
#   scripts/services.sh COMMAND [ARGS...]   runs COMMAND with the variables below, then stops both
#   source scripts/services.sh; services_start   (in a bash script: exports them, stops on EXIT)
#
# Exports LIVEKEEP_TEST_POSTGRES_URL (an admin URL: tests create a database each),
# LIVEKEEP_TEST_S3_ENDPOINT and LIVEKEEP_TEST_S3_BUCKET (an empty bucket: tests use a prefix each),
# and the AWS_* variables that object_store and the AWS CLI read (any keys: moto accepts all).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# A free TCP port on 127.0.0.1 (the kernel's pick; another process could take it before we bind,
# which only fails the start loudly).
services_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs a command as `postgres` when we are root (PostgreSQL refuses to run as root).
services_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

services_stop() {
    if [ -n "${SERVICES_MOTO_PID:-}" ]; then
        kill "$SERVICES_MOTO_PID" 2>/dev/null && wait "$SERVICES_MOTO_PID" 2>/dev/null
        SERVICES_MOTO_PID=
    fi
    if [ -n "${SERVICES_DIR:-}" ] && [ -f "$SERVICES_DIR/pg/postmaster.pid" ]; then
        services_as_postgres "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${SERVICES_DIR:-}" ]; then
        rm -rf "$SERVICES_DIR"
        SERVICES_DIR=
    fi
}

services_start() {
    if [ ! -x "$PG_BIN/initdb" ]; then
        echo "services: $PG_BIN/initdb is missing (apt-get install postgresql; scripts/bootstrap.sh does)" >&2
        return 1
    fi
    if ! python3 -c 'import moto.server' 2>/dev/null; then
        echo "services: moto[server] is missing (pip install 'moto[server]'; scripts/bootstrap.sh does)" >&2
        return 1
    fi
    trap services_stop EXIT
    # A signal ends the caller through its EXIT trap, so the services stop then too.
    trap "exit 130" INT
    trap "exit 143" TERM
    SERVICES_DIR=$(mktemp -d /tmp/livekeep-services.XXXXXX)
    chmod 755 "$SERVICES_DIR"
    mkdir "$SERVICES_DIR/pg" "$SERVICES_DIR/run"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$SERVICES_DIR/pg" "$SERVICES_DIR/run"

    local pg_port moto_port
    pg_port=$(services_free_port)
    services_as_postgres "$PG_BIN/initdb" -D "$SERVICES_DIR/pg" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$SERVICES_DIR/initdb.log" 2>&1 \
        || { cat "$SERVICES_DIR/initdb.log" >&2; return 1; }
    # Tests only: durability is the test's subject on the server side, not PostgreSQL's here.
    services_as_postgres "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg" -w -t 60 \
        -l "$SERVICES_DIR/run/postgres.log" \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$SERVICES_DIR/run \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null \
        || { cat "$SERVICES_DIR/run/postgres.log" >&2; return 1; }

    moto_port=$(services_free_port)
    # moto_server's module, so a pip install needs no shim rehash.
    python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$SERVICES_DIR/moto.log" 2>&1 &
    SERVICES_MOTO_PID=$!
    local ready=
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$moto_port/moto-api/" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.1
    done
    [ -n "$ready" ] || { echo "services: moto_server did not start" >&2; cat "$SERVICES_DIR/moto.log" >&2; return 1; }

    export LIVEKEEP_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
    export LIVEKEEP_TEST_S3_ENDPOINT="http://127.0.0.1:$moto_port"
    export LIVEKEEP_TEST_S3_BUCKET=livekeep-test
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_ENDPOINT_URL="$LIVEKEEP_TEST_S3_ENDPOINT" AWS_ALLOW_HTTP=true
    # moto needs no signature: a plain PUT creates the bucket.
    curl -fsS -X PUT -o /dev/null "$LIVEKEEP_TEST_S3_ENDPOINT/$LIVEKEEP_TEST_S3_BUCKET"
    echo "services: PostgreSQL on 127.0.0.1:$pg_port, moto_server on 127.0.0.1:$moto_port" >&2
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    if [ "$#" -eq 0 ]; then
        echo "usage: $0 COMMAND [ARGS...]  (or source it and call services_start)" >&2
        exit 2
    fi
    services_start
    status=0
    "$@" || status=$?
    services_stop
    exit "$status"
fi
