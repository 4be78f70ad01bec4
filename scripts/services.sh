#!/usr/bin/env bash
# The scale-out configuration's services for tests, on loopback only: PostgreSQL 15 (Debian's
# initdb + pg_ctl in a temporary directory, trust auth, fsync off) and an S3-compatible store
# (moto_server), each on a free 127.0.0.1 port. Both stop when the caller exits.
#
#   scripts/services.sh COMMAND [ARGS...]   runs COMMAND with the variables below, then stops both
#   scripts/services.sh --garage COMMAND …   the same with Garage as the S3 store (see below)
#   source scripts/services.sh; services_start   (in a bash script: exports them, stops on EXIT)
#
# PostgreSQL runs without fsync unless LIVEKEEP_SERVICES_DURABLE=1 (the benchmarks set it).
# Exports LIVEKEEP_TEST_POSTGRES_URL (an admin URL: tests create a database each),
# LIVEKEEP_TEST_S3_ENDPOINT and LIVEKEEP_TEST_S3_BUCKET (an empty bucket: tests use a prefix each),
# and the AWS_* variables that object_store and the AWS CLI read (any keys: moto accepts all).
#
# A real object store for the benchmarks: `services_start_garage` (after services_start) starts a
# single-node Garage (crates.io `garage`, installed once by `services_install_garage`) on free
# loopback ports with its data in a temporary directory on this disk, and points the S3 variables
# above at it instead of moto; LIVEKEEP_TEST_GARAGE_DIR holds its `garage.toml` and the pid of the
# running process in `garage.pid` (the fault tests stop and restart it there, its data kept, with
# the binary named by LIVEKEEP_TEST_GARAGE_BIN).
# `services_stop` stops it too.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
GARAGE_VERSION=2.5.0
GARAGE_ROOT=${LIVEKEEP_TOOLS_DIR:-$HOME/.cache/livekeep/tools}/garage-$GARAGE_VERSION

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
    services_stop_garage
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
    # Tests: durability is the test's subject on the server side, not PostgreSQL's here. The
    # benchmarks (LIVEKEEP_SERVICES_DURABLE=1) keep PostgreSQL's defaults: a commit is fsynced.
    local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${LIVEKEEP_SERVICES_DURABLE:-}" = 1 ] && durability=
    services_as_postgres "$PG_BIN/pg_ctl" -D "$SERVICES_DIR/pg" -w -t 60 \
        -l "$SERVICES_DIR/run/postgres.log" \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$SERVICES_DIR/run \
            $durability -c max_connections=400" \
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

# Garage's binary, built from crates.io once (about 11 minutes at low priority) when missing.
services_install_garage() {
    [ -x "$GARAGE_ROOT/bin/garage" ] && return 0
    echo "services: cargo install garage --version $GARAGE_VERSION (about 11 minutes, once)" >&2
    nice -n 10 cargo install garage --version "$GARAGE_VERSION" --root "$GARAGE_ROOT"
}

# `garage` with the running node's config.
services_garage() {
    "$GARAGE_ROOT/bin/garage" -c "$LIVEKEEP_TEST_GARAGE_DIR/garage.toml" "$@"
}

# Starts the Garage process of LIVEKEEP_TEST_GARAGE_DIR (again, after a stop: its data is kept)
# and waits until it answers.
services_run_garage() {
    local dir=$LIVEKEEP_TEST_GARAGE_DIR
    "$GARAGE_ROOT/bin/garage" -c "$dir/garage.toml" server >>"$dir/garage.log" 2>&1 &
    echo $! >"$dir/garage.pid"
    for _ in $(seq 100); do
        if services_garage status >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "services: garage did not start" >&2
    tail -n 20 "$dir/garage.log" >&2
    return 1
}

# A single-node Garage on loopback, one bucket and one key; exports the S3 variables for it.
services_start_garage() {
    services_install_garage || return 1
    [ -n "${SERVICES_DIR:-}" ] || { echo "services: call services_start first" >&2; return 1; }
    export LIVEKEEP_TEST_GARAGE_DIR=$SERVICES_DIR/garage LIVEKEEP_TEST_GARAGE_BIN=$GARAGE_ROOT/bin/garage
    local dir=$LIVEKEEP_TEST_GARAGE_DIR s3_port rpc_port admin_port
    mkdir -p "$dir/meta" "$dir/data"
    s3_port=$(services_free_port)
    rpc_port=$(services_free_port)
    admin_port=$(services_free_port)
    # Data and metadata synced before a PUT is answered: one node has no replica to lean on,
    # and the server's acknowledgment promises durable bytes.
    cat >"$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
metadata_fsync = true
data_fsync = true
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
TOML
    services_run_garage || return 1
    local node key_info
    node=$(services_garage status | grep -oE '^[0-9a-f]{16}' | head -n1)
    [ -n "$node" ] || { echo "services: no node id in garage status" >&2; services_garage status >&2; return 1; }
    services_garage layout assign -z dc1 -c 10G "$node" >/dev/null
    services_garage layout apply --version 1 >/dev/null
    services_garage bucket create livekeep-bench >/dev/null
    key_info=$(services_garage key create livekeep-bench)
    services_garage bucket allow --read --write --owner livekeep-bench --key livekeep-bench >/dev/null
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    AWS_ACCESS_KEY_ID=$(awk '/Key ID:/ { print $NF }' <<<"$key_info")
    AWS_SECRET_ACCESS_KEY=$(awk '/Secret key:/ { print $NF }' <<<"$key_info")
    if [ -z "$AWS_ACCESS_KEY_ID" ] || [ -z "$AWS_SECRET_ACCESS_KEY" ]; then
        echo "services: could not read the key garage created:" >&2
        echo "$key_info" >&2
        return 1
    fi
    export LIVEKEEP_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
    export LIVEKEEP_TEST_S3_BUCKET=livekeep-bench
    export AWS_REGION=garage AWS_DEFAULT_REGION=garage
    export AWS_ENDPOINT_URL="$LIVEKEEP_TEST_S3_ENDPOINT" AWS_ALLOW_HTTP=true
    echo "services: Garage $GARAGE_VERSION on 127.0.0.1:$s3_port (data in $dir)" >&2
}

# Stops the Garage process (whichever the pid file names: a fault test may have restarted it).
services_stop_garage() {
    local dir=${LIVEKEEP_TEST_GARAGE_DIR:-} pid
    [ -n "$dir" ] && [ -f "$dir/garage.pid" ] || return 0
    pid=$(cat "$dir/garage.pid")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/garage.pid"
    unset LIVEKEEP_TEST_GARAGE_DIR LIVEKEEP_TEST_GARAGE_BIN
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    garage=
    if [ "${1:-}" = "--garage" ]; then
        garage=1
        shift
    fi
    if [ "$#" -eq 0 ]; then
        echo "usage: $0 [--garage] COMMAND [ARGS...]  (or source it and call services_start)" >&2
        exit 2
    fi
    services_start
    [ -z "$garage" ] || services_start_garage
    status=0
    "$@" || status=$?
    services_stop
    exit "$status"
fi
