#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from GET /api/openapi.json and
# checks that no answer is a 5xx and that every answer conforms to the document.
# Bounded: a few examples per operation and a time budget, so it fits in CI.
# Usage: scripts/schemathesis.sh            (builds the server, runs on a temporary data dir)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-15}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-150}
CHECKS=${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}

if ! command -v schemathesis >/dev/null \
    || [[ "$(schemathesis --version 2>/dev/null)" != *"$SCHEMATHESIS_VERSION"* ]]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION" >&2
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet -p livekeep-server
data_dir=$(mktemp -d)
out=$(mktemp)
cleanup() {
    local status=$?
    # A 5xx is logged by the server with its cause: show it next to schemathesis's report.
    if [[ $status -ne 0 && -s "$data_dir/server.log" ]]; then
        echo "--- the server's log (errors and warnings, last 60 lines) ---" >&2
        grep -E "ERROR|WARN" "$data_dir/server.log" | tail -60 >&2 || true
    fi
    [[ -n "${server_pid:-}" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$data_dir" "$out"
}
trap cleanup EXIT

RUST_LOG=warn "${CARGO_TARGET_DIR:-target}/debug/livekeep" serve --listen 127.0.0.1:0 --data-dir "$data_dir" \
    --www-dir "$data_dir/no-www" >"$out" 2>"$data_dir/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$out" 2>/dev/null && break
    sleep 0.1
done
base=$(sed -n 's/^Livekeep listening on \(http[^ ]*\).*/\1/p' "$out" | head -1)
base=${base%/}
[[ -n "$base" ]] || { echo "the server did not start" >&2; cat "$data_dir/server.log" >&2; exit 1; }

# A signed-in user, so the routes behind a token are exercised past the 401.
token=$(curl -fsS -H 'Content-Type: application/json' \
    -d '{"username":"schemathesis","password":"password123"}' \
    "$base/api/auth/register" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# Excluded checks, and why, are listed in SECURITY.md ("Property-based API testing").
# Run from the temporary directory: schemathesis keeps a cache of failures in its cwd.
cd "$data_dir"
timeout $((MAX_TIME + 60)) schemathesis run "$base/api/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --exclude-path-regex '/stream$' \
    --exclude-name 'PATCH /api/uploads/{upload_id}' \
    --exclude-name 'POST /api/auth/logout' \
    --seed 1 \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    "$@"
