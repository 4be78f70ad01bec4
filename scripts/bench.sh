#!/usr/bin/env bash
# `make bench`: runs every benchmark on this machine and rewrites BENCHMARKS.md.
#   scripts/bench.sh          the default (~15 min): 3-minute browser recording, 15 s load steps
#   scripts/bench.sh --long   a 10-minute browser recording and 60 s load steps
# Installs what is missing first (bootstrap, nginx, wrk). Figures are medians of several runs
# with min–max, each beside a baseline measured in the same run; bench/findings.md is copied in.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

browser_seconds=180
load_seconds=15
for arg in "$@"; do
  case "$arg" in
    --long) browser_seconds=600; load_seconds=60 ;;
    *) echo "bench.sh: unknown argument $arg (only --long)" >&2; exit 2 ;;
  esac
done

scripts/bootstrap.sh
# The baselines: nginx for Range requests, wrk as the HTTP client of both sides.
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx)

# What is measured is what is built now; others may commit while the benchmarks run.
built_commit=$(git rev-parse --short HEAD)
built_dirty=$(git diff --quiet HEAD -- server webm recorder-wasm www || echo ' (with uncommitted changes)')
built_at=$(date -u '+%H:%M UTC')
log "building the page and the wasm recorder"
scripts/build.sh
log "building the server and the benchmarks (release)"
cargo build --quiet --release -p livekeep-server -p livekeep-bench -p livekeep-webm
target_dir=${CARGO_TARGET_DIR:-target}
bench=("$target_dir/release/livekeep-bench" --server-bin "$target_dir/release/livekeep")
# Hundreds of recorders hold as many sockets on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
started=$(date -u +%s)

# Each section: a heading line with the command that reproduces it, then the tool's markdown.
section() {
  local name=$1 shown=$2
  shift 2
  log "$name"
  local load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  {
    "$@"
    printf '\nReproduce: `%s`. Load average before / after: %s / %s.\n\n' \
      "$shown" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$out/$name.md"
}

section ingest "livekeep-bench ingest --patch-mib 8 --patches 128 --runs 5" \
  "${bench[@]}" ingest --patch-mib 8 --patches 128 --runs 5
section load "livekeep-bench load --recorders 64,256 --runs 3 --duration $load_seconds --search-max 2048" \
  "${bench[@]}" load --recorders 64,256 --runs 3 --duration "$load_seconds" --search-max 2048
# The same load on the scale-out configuration: PostgreSQL 15 and moto_server on loopback
# (scripts/services.sh, stopped on exit), one node, a fresh database.
# shellcheck source=scripts/services.sh
source scripts/services.sh
services_start
trap 'services_stop; rm -rf "$out"' EXIT
scaleout_db=livekeep_bench_$$
psql "$LIVEKEEP_TEST_POSTGRES_URL" -qAtc "CREATE DATABASE $scaleout_db"
section load-scaleout "DATABASE_URL=postgres://…/$scaleout_db LIVEKEEP_STORAGE_URL=s3://$LIVEKEEP_TEST_S3_BUCKET/bench livekeep-bench load --recorders 64 --runs 3 --duration $load_seconds --search-max 0 --configuration '…'" \
  env DATABASE_URL="${LIVEKEEP_TEST_POSTGRES_URL%/*}/$scaleout_db" \
  LIVEKEEP_STORAGE_URL="s3://$LIVEKEEP_TEST_S3_BUCKET/bench" \
  "${bench[@]}" load --recorders 64 --runs 3 --duration "$load_seconds" --search-max 0 \
  --configuration "PostgreSQL 15 + S3 (moto_server, a Python emulator on the same cores), one node"
services_stop || true
trap 'rm -rf "$out"' EXIT

section range "livekeep-bench range --size-mib 256 --connections 32 --seconds 10 --runs 3" \
  "${bench[@]}" range --size-mib 256 --connections 32 --seconds 10 --runs 3 \
  --generator "$target_dir/release/finalize-bench" --nginx "$nginx_bin"
section feed "livekeep-bench feed --posts 1000,10000 --runs 3" \
  "${bench[@]}" feed --posts 1000,10000 --runs 3

finalize_section() {
  echo "## Finalize a ~1 GiB MediaRecorder-style WebM"
  echo
  echo "\`finalize-bench\` (livekeep-webm) generates a ~1 GiB WebM shaped like MediaRecorder's (unknown sizes, no Cues), then times \`finalize_webm\` and the baseline \`ffmpeg -c copy\` remux of the same file, each as its own process under \`/usr/bin/time\` (peak RSS). Goals: ≥ 1.5× faster than ffmpeg, peak RSS < 64 MiB."
  echo
  "$target_dir/release/finalize-bench" --size-mib 1024 --runs 3 --dir "${TMPDIR:-/tmp}"
}
section finalize "cargo run --release -p livekeep-webm --bin finalize-bench -- --size-mib 1024 --runs 3" finalize_section

wasm_section() {
  local wasm=recorder-wasm/pkg/recorder_wasm_bg.wasm
  local raw gz
  raw=$(stat -c %s "$wasm")
  gz=$(gzip -9 -c "$wasm" | wc -c)
  echo "## recorder-wasm size"
  echo
  echo "\`$wasm\` as built by \`scripts/build.sh\` (release, \`opt-level = \"z\"\`, wasm-bindgen), gzipped with \`gzip -9\`. No baseline: the goal is absolute, so the ratio is to the goal."
  echo
  echo "| figure | size | goal | ratio to goal |"
  echo "|---|---|---|---|"
  awk -v raw="$raw" -v gz="$gz" 'BEGIN {
    printf "| raw | %.1f KiB | — | — |\n", raw / 1024
    printf "| gzip -9 | %.1f KiB | < 150 KiB: **%s** | %.2f× |\n", gz / 1024, (gz < 150 * 1024 ? "met" : "not met"), gz / (150 * 1024)
  }'
}
section wasm "scripts/build.sh && gzip -9 -c recorder-wasm/pkg/recorder_wasm_bg.wasm | wc -c" wasm_section

section browser "node bench/browser-memory.mjs --duration $browser_seconds --interval 30" \
  node bench/browser-memory.mjs --duration "$browser_seconds" --interval 30 --server-bin "$target_dir/release/livekeep"

elapsed=$(($(date -u +%s) - started))
version() { "$@" 2>&1 | head -n1 || true; }
disk=$(df -hT "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $1 " (" $2 ", " $3 ")" }')
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (\`scripts/bench.sh $*\`) on $(date -u '+%Y-%m-%d %H:%M UTC'), measuring the tree built at $built_at from commit \`$built_commit\`$built_dirty, in $((elapsed / 60)) min $((elapsed % 60)) s. Do not edit by hand: edit \`bench/findings.md\` or the benchmarks and run \`make bench\` again."
  echo
  echo "Every figure is the median of several runs with min–max, beside a baseline measured in the same run on the same machine; ratios compare medians. The load generator, the servers and the baselines share the machine's cores, so absolute numbers move with other load; the ratios are the figures to read."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -n1) |"
  echo "| memory | $(free -h | awk '/^Mem:/ { print $2 }') |"
  echo "| disk under test | $disk |"
  echo "| kernel | $(uname -sr) |"
  echo "| rustc | $(version rustc --version) |"
  echo "| ffmpeg | $(version ffmpeg -version) |"
  echo "| nginx | $(version "$nginx_bin" -v) |"
  echo "| wrk | $(version wrk -v) |"
  # Debian's chromium wrapper prints a shell warning on stderr before the version.
  echo "| chromium | $(chromium --version 2>/dev/null | head -n1) |"
  echo "| node | $(version node --version) |"
  echo
  for name in ingest load load-scaleout range feed finalize wasm browser; do
    cat "$out/$name.md"
  done
  echo "## Findings"
  echo
  cat bench/findings.md
} >BENCHMARKS.md
log "wrote BENCHMARKS.md in $((elapsed / 60)) min $((elapsed % 60)) s"
