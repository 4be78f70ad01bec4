#!/usr/bin/env bash
# Builds the wasm recorder into recorder-wasm/pkg and the page into www/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}

echo "==> building recorder-wasm" >&2
cargo build --quiet -p recorder-wasm --target wasm32-unknown-unknown --release
wasm-bindgen --target web --out-dir recorder-wasm/pkg \
  "$target_dir/wasm32-unknown-unknown/release/recorder_wasm.wasm"

echo "==> building www" >&2
(cd www && npx --no-install vite build --logLevel warn)
