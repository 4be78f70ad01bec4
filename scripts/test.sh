#!/usr/bin/env bash
# Runs every test: formatting and lints, Rust unit and integration tests, the recorder's
# browser tests in headless Chromium, and the end-to-end tests against the real server; then
# the same server tests and an e2e subset on the scale-out configuration (PostgreSQL + S3).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

scripts/bootstrap.sh

# One build per run: incremental compilation's caches would only double target/ on disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
export CHROMEDRIVER=${CHROMEDRIVER:-/usr/bin/chromedriver}
# The runner times the whole browser test binary (about a minute of real backoff waits), not each test.
export WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-180}

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (native and wasm)"
cargo clippy --quiet --workspace --all-targets -- -D warnings
cargo clippy --quiet -p recorder-wasm --target wasm32-unknown-unknown --all-targets -- -D warnings

# PostgreSQL 15 and an S3-compatible server on loopback, stopped on exit. Started before the
# Rust tests: the schema test compares both engines' migrations in every run.
step "start PostgreSQL and moto_server (scripts/services.sh)"
# shellcheck source=scripts/services.sh
source scripts/services.sh
services_start

step "Rust unit and integration tests"
# The object-store tests among them start their own moto_server and Azurite (tests/node_modules,
# from bootstrap's npm ci) on loopback, and run on both: S3 and Azure Blob Storage.
cargo test --workspace

step "API tests again on S3 (moto on loopback, a bucket per test)"
LIVEKEEP_TEST_STORAGE=s3 cargo test -p livekeep-server --test api

step "schemathesis against /api/openapi.json (bounded)"
scripts/schemathesis.sh

step "recorder-wasm browser tests (headless Chromium, fake camera)"
cargo test -p recorder-wasm --target wasm32-unknown-unknown

step "build the wasm module and the page; the page's unit tests"
scripts/build.sh
(cd www && npx --no-install tsc --noEmit && npm test --silent)

step "the Django example's tests (examples/django, pinned packages in its venv)"
examples/django/.venv/bin/python examples/django/manage.py test social

step "end-to-end tests (real server, headless Chromium, fake camera)"
# `cargo test` above built target/debug/livekeep with the same features; reuse it. Every test
# file but two-nodes.test.mjs, which needs PostgreSQL and a shared store and runs below;
# django.test.mjs runs the Django example (examples/django's venv) against it.
(cd tests && node --test --test-concurrency=1 --test-timeout=300000 --test-force-exit \
  $(find e2e -name '*.test.mjs' ! -name two-nodes.test.mjs | sort))

# The scale-out configuration's tests: every server they start gets a fresh database and a
# fresh bucket or prefix, so the same tests check the other backends.
export LIVEKEEP_TEST_DATABASE=postgres LIVEKEEP_TEST_STORAGE=s3

step "server API tests on PostgreSQL + S3 (moto)"
cargo test -p livekeep-server --test api

step "two-node tests on one PostgreSQL and one moto bucket"
# They ran above on a shared directory; here the nodes share an S3 bucket.
cargo test -p livekeep-server --test scaleout

step "end-to-end subset on PostgreSQL + S3 (moto)"
# Recording to replay, a live room with viewers and chat, crashes and cuts, an unmodified tus
# client: what reaches the database and the store. The page-only and package tests are not
# about the backends and run once above. two-nodes.test.mjs: two nodes on one database and one
# prefix behind a round-robin proxy, a live, a viewer and chat across them, one node killed.
(cd tests && node --test --test-concurrency=1 --test-timeout=300000 --test-force-exit \
  e2e/record-and-replay.test.mjs e2e/live-room.test.mjs e2e/resilience.test.mjs e2e/tus-interop.test.mjs \
  e2e/two-nodes.test.mjs)
