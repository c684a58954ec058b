#!/usr/bin/env bash
# Installs Azurite (Microsoft's Azure Storage emulator, npm package `azurite`) for the export
# path's tests, benchmark and demo, into ${CARGO_TARGET_DIR:-target}/azurite, where
# `iothub_emulator::azurite` finds it. Tests start it themselves on an ephemeral loopback
# port, with telemetry off. Needs Node.js 18+ and npm. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${AZURITE_VERSION:-3.35.0}"
dir="${CARGO_TARGET_DIR:-$PWD/target}/azurite"
bin="$dir/node_modules/.bin/azurite-blob"
if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$version\"" "$dir/node_modules/azurite/package.json" 2>/dev/null; then
  if ! command -v npm >/dev/null; then
    SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
  fi
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@$version" >&2
fi
echo "$bin"
