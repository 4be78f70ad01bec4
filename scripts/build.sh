#!/usr/bin/env bash
# Builds the recorder's npm package into recorder-wasm/pkg and the page into www/dist.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-target}
pkg=recorder-wasm/pkg

echo "==> building recorder-wasm" >&2
cargo build --quiet -p recorder-wasm --target wasm32-unknown-unknown --release
rm -rf "$pkg"
wasm-bindgen --target web --out-dir "$pkg" \
  "$target_dir/wasm32-unknown-unknown/release/recorder_wasm.wasm"
# No wasm-opt pass: Debian's binaryen (108) cannot parse what rustc 1.95 emits
# ("invalid code after misc prefix"), and opt-level "z" keeps the module under budget.

echo "==> packaging @livekeep/recorder" >&2
# The generated classes declare `[Symbol.dispose]`, whose type lives in TypeScript's
# esnext.disposable lib: reference it so an app's type-check needs no `lib` change.
sed -i '1i /// <reference lib="esnext.disposable" />' "$pkg/recorder_wasm.d.ts"
# The entry point (lazy wasm loading) and the React hook, compiled next to wasm-bindgen's
# output with www's TypeScript; then the package.json (version from Cargo) and the README.
www/node_modules/.bin/tsc -p recorder-wasm/js/tsconfig.json
version=$(cargo pkgid -p recorder-wasm | sed 's/.*[#@]//')
sed "s/\"version\": \"0.0.0\"/\"version\": \"$version\"/" recorder-wasm/js/package.json >"$pkg/package.json"
cp recorder-wasm/js/README.md "$pkg/README.md"

echo "==> building www" >&2
(cd www && npx --no-install vite build --logLevel warn)
