#!/usr/bin/env bash
# Installs what the app and its tests need, only where it is missing, so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: the headless browser and its driver for browser tests, ffmpeg for media checks.
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v node >/dev/null && command -v npm >/dev/null || need_apt+=(nodejs npm)
# PostgreSQL 15 (Debian 12's) for the scale-out tests; scripts/services.sh runs it in a temp dir.
[ -x /usr/lib/postgresql/15/bin/initdb ] || need_apt+=(postgresql)
command -v curl >/dev/null || need_apt+=(curl)
# The feed's cards label their lines with emoji (📹 📅 ⏱️ 👁️ 💬, as the original design): the
# screenshots the e2e tests take need a colour emoji font, as any desktop or phone has.
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need_apt+=(fonts-noto-color-emoji)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# An S3-compatible server, pinned: the object-storage API tests start `moto_server` on a free
# loopback port, scripts/services.sh does for the scale-out step.
MOTO_VERSION=5.2.1
if [ "$(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]; then
  log "pip install moto[server]==$MOTO_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  # Under pyenv, the new `moto_server` command needs a shim.
  if command -v pyenv >/dev/null; then pyenv rehash; fi
fi

# Rust: the wasm target and a wasm-bindgen CLI of exactly the version in Cargo.lock
# (the CLI refuses modules made by another version).
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
if [ -z "$wb_version" ]; then
  echo "bootstrap: cannot find wasm-bindgen in Cargo.lock" >&2
  exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  log "cargo install wasm-bindgen-cli $wb_version (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "=$wb_version"
fi

# npm packages, installed exactly from the lockfiles; a stamp of the lockfile skips a second install.
# tests/ holds Azurite too, the Azure Blob Storage emulator the object-store tests start.
for dir in www tests; do
  stamp="$dir/node_modules/.livekeep-lock.sha256"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
done

# The Django example's pinned packages (Django, PyJWT, standardwebhooks) in its own venv: the
# example's tests and tests/e2e/django.test.mjs run Django from it, and the server's webhook
# tests verify signatures with its `standardwebhooks` (an independent implementation). A stamp
# of requirements.txt skips a second install.
venv=examples/django/.venv
stamp="$venv/.livekeep-requirements.sha256"
want=$(sha256sum examples/django/requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "pip install -r examples/django/requirements.txt into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r examples/django/requirements.txt
  echo "$want" >"$stamp"
fi
