#!/usr/bin/env bash
# `make bench`: runs every benchmark on this machine and rewrites BENCHMARKS.md.
#   scripts/bench.sh          the default (~15 min): 3-minute browser recording, 15 s load steps
#   scripts/bench.sh --long   a 10-minute browser recording and 60 s load steps
#   scripts/bench.sh --only stop,stop-s3   only these sections, replaced in BENCHMARKS.md
#                             (the others stay as the last full run wrote them)
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
shown_args="$*"
all_sections=(ingest load load-scaleout checks-scaleout range feed finalize finalize-mp4 plan stop stop-s3 wasm browser)
only=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --long) browser_seconds=600; load_seconds=60 ;;
    --only) only=,${2:?--only needs section names},; shift ;;
    *) echo "bench.sh: unknown argument $1 (--long, --only NAME[,NAME])" >&2; exit 2 ;;
  esac
  shift
done
selected() { [ -z "$only" ] || [[ $only == *",$1,"* ]]; }
for name in ${only//,/ }; do
  [[ " ${all_sections[*]} " == *" $name "* ]] \
    || { echo "bench.sh: unknown section $name (${all_sections[*]})" >&2; exit 2; }
done

scripts/bootstrap.sh
# The baselines: nginx for Range requests, wrk as the HTTP client of both sides.
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
# OpenSSL's SHA-256, the baseline of the upload hash's line in the plan section.
command -v openssl >/dev/null || need_apt+=(openssl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx)

# The ingest section's other tus server: rustus 0.5.10 from crates.io, built once and cached.
tools_dir=${LIVEKEEP_TOOLS_DIR:-$HOME/.cache/livekeep/tools}
rustus_bin=$tools_dir/rustus-0.5.10/bin/rustus
if selected ingest && [ ! -x "$rustus_bin" ]; then
  log "cargo install rustus 0.5.10 (once, ~10 min)"
  nice -n 10 cargo install rustus --version 0.5.10 --root "$tools_dir/rustus-0.5.10"
fi
# What is measured is what is built now; others may commit while the benchmarks run.
built_commit=$(git rev-parse --short HEAD)
built_dirty=$(git diff --quiet HEAD -- server webm recorder-wasm www || echo ' (with uncommitted changes)')
built_at=$(date -u '+%H:%M UTC')
# The two-node check drives the real page (www/dist): built from this tree, never a stale one.
if selected wasm || selected browser || selected checks-scaleout; then
  log "building the page and the wasm recorder"
  scripts/build.sh
fi
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
  selected "$name" || return 0
  log "$name"
  local load_before
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  {
    "$@"
    printf '\nReproduce: `%s`. Load average before / after: %s / %s.' \
      "$shown" "$load_before" "$(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "$only" ]; then
      printf ' Run on its own (`scripts/bench.sh --only %s`) on %s, tree at commit `%s`%s.' \
        "$name" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$built_commit" "$built_dirty"
    fi
    printf '\n\n'
  } >"$out/$name.md"
}

section ingest "livekeep-bench ingest --patch-mib 8 --patches 128 --runs 7" \
  "${bench[@]}" ingest --patch-mib 8 --patches 128 --runs 7 --rustus "$rustus_bin"
section load "livekeep-bench load --recorders 64,256 --runs 3 --duration $load_seconds --search-max 2048" \
  "${bench[@]}" load --recorders 64,256 --runs 3 --duration "$load_seconds" --search-max 2048
# The scale-out configuration on a real object store: PostgreSQL 15 and a single-node Garage on
# loopback (scripts/services.sh; Garage built from crates.io once, ~11 min, and cached), one
# node, a fresh database, each run followed by Garage alone doing the same PUTs. Then, on the
# same Garage, the fault tests (the store stopped and started again, a put cut short, PostgreSQL
# restarted) and the two-node end-to-end test, reported as passed or failed with their duration.
# shellcheck source=scripts/services.sh
source scripts/services.sh
if selected load-scaleout || selected checks-scaleout; then
# Both durable, as in production: PostgreSQL fsyncs its commits, Garage its data and metadata.
LIVEKEEP_SERVICES_DURABLE=1 services_start
services_start_garage
trap 'services_stop; rm -rf "$out"' EXIT
scaleout_db=livekeep_bench_$$
psql "$LIVEKEEP_TEST_POSTGRES_URL" -qAtc "CREATE DATABASE $scaleout_db"
scaleout_configuration="PostgreSQL 15 + Garage $GARAGE_VERSION (one node each, loopback, commits and objects fsynced)"
section load-scaleout "DATABASE_URL=postgres://…/$scaleout_db LIVEKEEP_STORAGE_URL=s3://$LIVEKEEP_TEST_S3_BUCKET/bench livekeep-bench scaleout --recorders 64,256 --runs 3 --duration $load_seconds --baseline-url s3://$LIVEKEEP_TEST_S3_BUCKET/baseline --store-pid … --store-name 'Garage $GARAGE_VERSION'" \
  env DATABASE_URL="${LIVEKEEP_TEST_POSTGRES_URL%/*}/$scaleout_db" \
  LIVEKEEP_STORAGE_URL="s3://$LIVEKEEP_TEST_S3_BUCKET/bench" \
  "${bench[@]}" scaleout --recorders 64,256 --runs 3 --duration "$load_seconds" \
  --baseline-url "s3://$LIVEKEEP_TEST_S3_BUCKET/baseline" \
  --store-pid "$(cat "$LIVEKEEP_TEST_GARAGE_DIR/garage.pid")" --store-name "Garage $GARAGE_VERSION" \
  --configuration "$scaleout_configuration"

# One line of the checks' table: runs a command, keeps its log in the target dir.
check() {
  local title=$1 log=$2 began result
  shift 2
  began=$(date +%s)
  if "$@" >"$log" 2>&1; then result=passed; else result="**failed** (log: \`$log\`)"; fi
  echo "| $title | $result | $(($(date +%s) - began)) s |"
}
scaleout_checks() {
  rm -rf "$target_dir/bench-two-nodes-servers" && mkdir -p "$target_dir/bench-two-nodes-servers"
  echo "## Scale-out on Garage: faults and two nodes"
  echo
  echo "Run on the Garage and PostgreSQL of the section above. The fault tests (\`server/tests/scaleout/faults.rs\`, which \`make test\` runs on moto behind a TCP proxy) here stop the Garage process for 10 s mid-live and start it again on its data, cut a PUT short with the proxy (its answer lost after it landed, or never sent), and restart PostgreSQL mid-live; each checks that requests meanwhile get a prompt \`503\` with \`Retry-After\`, that the recorder's protocol (HEAD, then PATCH from the offset) resumes, and that the finalized recording holds every acknowledged byte. The two-node end-to-end test drives the real page in headless Chromium through a round-robin proxy over two nodes on one database and one Garage prefix, one node killed mid-live."
  echo
  echo "| check | result | duration |"
  echo "|---|---|---|"
  check "the store stopped for 10 s, a put cut short, PostgreSQL restarted (\`cargo test -p livekeep-server --test scaleout -- --test-threads=1 faults::\`)" \
    "$target_dir/bench-scaleout-faults.log" \
    cargo test --quiet -p livekeep-server --test scaleout -- --test-threads=1 faults::
  check "two nodes in Chromium, one killed mid-live (\`tests/e2e/two-nodes.test.mjs\`, release build)" \
    "$target_dir/bench-two-nodes.log" \
    env -C tests LIVEKEEP_TEST_DATABASE=postgres LIVEKEEP_TEST_STORAGE=s3 \
    LIVEKEEP_SERVER_BIN="$(realpath "$target_dir/release/livekeep")" \
    LIVEKEEP_E2E_LOG_DIR="$(realpath "$target_dir")/bench-two-nodes-servers" \
    node --test --test-concurrency=1 --test-timeout=300000 --test-force-exit e2e/two-nodes.test.mjs
}
section checks-scaleout "scripts/services.sh --garage bash -c 'cargo test -p livekeep-server --test scaleout -- --test-threads=1 faults:: && cd tests && LIVEKEEP_TEST_DATABASE=postgres LIVEKEEP_TEST_STORAGE=s3 node --test e2e/two-nodes.test.mjs'" \
  scaleout_checks
services_stop || true
trap 'rm -rf "$out"' EXIT
fi

section range "livekeep-bench range --size-mib 256 --connections 32 --seconds 10 --runs 5" \
  "${bench[@]}" range --size-mib 256 --connections 32 --seconds 10 --runs 5 \
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

finalize_mp4_section() {
  echo "## Finalize a ~1 GiB fragmented MP4"
  echo
  echo "\`finalize-bench --container mp4\` (livekeep-webm) generates a ~1 GiB fragmented MP4 shaped like Chromium's \`video/mp4\` recording (a moof + mdat per keyframe, no duration, no index), then times \`finalize_mp4\` (durations in the moov, a sidx per track, the fragments copied as they are) and the baseline \`ffmpeg -c copy -movflags +faststart\` (also a seekable MP4) on the same file, each as its own process under \`/usr/bin/time\` (peak RSS). Goals: ≥ 5× faster than ffmpeg, peak RSS < 64 MiB."
  echo
  "$target_dir/release/finalize-bench" --container mp4 --size-mib 1024 --runs 3 --dir "${TMPDIR:-/tmp}"
}
section finalize-mp4 "cargo run --release -p livekeep-webm --bin finalize-bench -- --container mp4 --size-mib 1024 --runs 3" finalize_mp4_section

plan_section() {
  echo "## Plan the finished file's head from a complete index"
  echo
  echo "What a stop has left to do once the index was learnt as the bytes arrived (issue 17): \`plan_webm\` / \`plan_mp4\` lay out the new head (WebM: EBML header, Segment, SeekHead, Info with Duration, Tracks, then after the clusters the Cues; MP4: ftyp, moov with durations, a sidx per track) around the upload's clusters or fragments, which are not copied. Goal: microseconds to milliseconds whatever the length. Below the table, the other work every byte of an upload costs as it arrives: its SHA-256, beside OpenSSL's."
  echo
  "$target_dir/release/finalize-bench" plan --sizes 10,100,1024 --dir "${TMPDIR:-/tmp}"
}
section plan "cargo run --release -p livekeep-webm --bin finalize-bench -- plan --sizes 10,100,1024" plan_section

# Stop in constant time (issue 17): 10 MiB, 100 MiB and 1 GiB recordings in 8 MiB PATCHes,
# against `ffmpeg -c copy` of the same files; then the same on PostgreSQL + S3 (moto), where the
# layout is assembled into one object after the answer (its time is reported beside it).
# Five runs on local disk, where a stop of a few milliseconds is within the machine's noise and
# two slow runs of three make the median; three on moto, whose gigabyte uploads take minutes.
stop_args=(stop --sizes 10,100,1024 --patch-mib 8 --generator "$target_dir/release/finalize-bench")
section stop "livekeep-bench stop --sizes 10,100,1024 --patch-mib 8 --runs 5" \
  "${bench[@]}" "${stop_args[@]}" --runs 5 --configuration "SQLite + local disk (embedded)"
if selected stop-s3; then
  services_start
  trap 'services_stop; rm -rf "$out"' EXIT
  stop_db=livekeep_bench_stop_$$
  psql "$LIVEKEEP_TEST_POSTGRES_URL" -qAtc "CREATE DATABASE $stop_db"
  section stop-s3 "DATABASE_URL=postgres://…/$stop_db LIVEKEEP_STORAGE_URL=s3://$LIVEKEEP_TEST_S3_BUCKET/stop livekeep-bench stop --sizes 10,100,1024 --patch-mib 8 --runs 3 --configuration '…'" \
    env DATABASE_URL="${LIVEKEEP_TEST_POSTGRES_URL%/*}/$stop_db" \
    LIVEKEEP_STORAGE_URL="s3://$LIVEKEEP_TEST_S3_BUCKET/stop" \
    "${bench[@]}" "${stop_args[@]}" --runs 3 \
    --configuration "PostgreSQL 15 + S3 (moto_server, a Python emulator on the same cores), one node"
  services_stop || true
  trap 'rm -rf "$out"' EXIT
fi

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
# A section between markers, so that `--only` can replace it alone.
marked() {
  printf '<!-- bench:%s -->\n' "$1"
  cat "$out/$1.md"
  printf '<!-- /bench:%s -->\n\n' "$1"
}
if [ -n "$only" ]; then
  for name in ${only//,/ }; do
    marked "$name" >"$out/$name.marked"
  done
  # Each section replaces its marked predecessor, or goes before the findings.
  python3 - "$out" ${only//,/ } <<'PY'
import re, sys
out, names = sys.argv[1], sys.argv[2:]
text = open("BENCHMARKS.md").read()
for name in names:
    block = open(f"{out}/{name}.marked").read()
    old = re.compile(rf"<!-- bench:{re.escape(name)} -->\n.*?<!-- /bench:{re.escape(name)} -->\n\n?", re.S)
    # A section written by a full run has no markers: found by its own heading line.
    heading = next((line for line in block.splitlines() if line.startswith("## ")), None)
    unmarked = heading and re.compile(
        rf"^{re.escape(heading)}\n.*?(?=^## |^<!-- bench:)", re.S | re.M)
    if old.search(text):
        text = old.sub(lambda _: block, text, count=1)
    elif unmarked and unmarked.search(text):
        text = unmarked.sub(lambda _: block, text, count=1)
    elif "\n## Findings\n" in text:
        text = text.replace("\n## Findings\n", "\n" + block + "## Findings\n", 1)
    else:
        text += "\n" + block
# The hand-written findings follow the figures they discuss, as in a full run.
findings = open("bench/findings.md").read()
if "\n## Findings\n" in text:
    text = text.split("\n## Findings\n", 1)[0] + "\n## Findings\n\n" + findings
open("BENCHMARKS.md", "w").write(text)
PY
  log "replaced ${only//,/ } in BENCHMARKS.md in $((elapsed / 60)) min $((elapsed % 60)) s"
  exit 0
fi
version() { "$@" 2>&1 | head -n1 || true; }
disk=$(df -hT "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $1 " (" $2 ", " $3 ")" }')
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (\`scripts/bench.sh $shown_args\`) on $(date -u '+%Y-%m-%d %H:%M UTC'), measuring the tree built at $built_at from commit \`$built_commit\`$built_dirty, in $((elapsed / 60)) min $((elapsed % 60)) s. Do not edit by hand: edit \`bench/findings.md\` or the benchmarks and run \`make bench\` again."
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
  for name in "${all_sections[@]}"; do
    marked "$name"
  done
  echo "## Findings"
  echo
  cat bench/findings.md
} >BENCHMARKS.md
log "wrote BENCHMARKS.md in $((elapsed / 60)) min $((elapsed % 60)) s"
