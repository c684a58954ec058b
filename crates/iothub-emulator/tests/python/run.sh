#!/usr/bin/env bash
# Installs Microsoft's azure-iot-hub service SDK from PyPI into a virtual environment, starts the
# iothub-emulator binary on a free loopback port and runs test_sdk.py against it over HTTPS.
# Usage: bash crates/iothub-emulator/tests/python/run.sh   (from anywhere; exits non-zero on failure)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
# 2.7.0 is the newest release and installs on Python 3.11 (uamqp ships wheels for it). It imports
# six without declaring it as a dependency, so six is installed beside it.
sdk_version="${AZURE_IOT_HUB_VERSION:-2.7.0}"
devices="${EMULATOR_DEVICES:-250}"
python="${PYTHON:-python3}"

work="$(mktemp -d)"
emulator_pid=""
cleanup() {
    if [[ -n "$emulator_pid" ]] && kill -0 "$emulator_pid" 2>/dev/null; then
        kill -TERM "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

venv="$target/iothub-emulator-sdk-venv"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "azure-iot-hub==$sdk_version" "six==1.17.0"

(cd "$repo" && cargo build --quiet -p iothub-emulator --bin iothub-emulator)
binary="$target/debug/iothub-emulator"

"$binary" --listen 127.0.0.1:0 --hub-name sdk-test-hub --devices "$devices" --seed 42 \
    --ca-cert-out "$work/ca.pem" --info-out "$work/info.json" >"$work/emulator.log" 2>&1 &
emulator_pid=$!

for _ in $(seq 1 100); do
    [[ -s "$work/info.json" ]] && break
    if ! kill -0 "$emulator_pid" 2>/dev/null; then
        echo "iothub-emulator exited early:" >&2
        cat "$work/emulator.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ ! -s "$work/info.json" ]]; then
    echo "iothub-emulator did not write $work/info.json in time" >&2
    exit 1
fi

EMULATOR_DEVICES="$devices" REQUESTS_CA_BUNDLE="$work/ca.pem" \
    "$venv/bin/python" "$here/test_sdk.py" "$work/info.json"
