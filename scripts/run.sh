#!/usr/bin/env bash
# Runs Livekeep on this machine: embedded SQLite and local storage under ./data, page at the printed URL.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/build.sh
echo "==> building the server (release)" >&2
cargo build --quiet --release -p livekeep-server
exec "${CARGO_TARGET_DIR:-target}/release/livekeep" serve --www-dir www/dist "$@"
