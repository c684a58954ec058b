#!/usr/bin/env bash
# Import benchmark: seeds N devices in the IoT Hub emulator, imports them through the real
# server, and compares the end-to-end rate with the rate at which the IoT Hub client alone
# pages through the same devices, measured in the same run on the same machine.
#
#   bash bench/import.sh                 # 100,000 devices
#   DEVICES="100000 1000000" bash bench/import.sh
#
# Prints, per size and backend: devices/s end to end, devices/s for the client alone, their
# ratio, and the server's peak resident memory (VmHWM); then PostgreSQL's rate as a share of
# SQLite's. PostgreSQL runs on a throwaway cluster (.ci/postgres.sh) when its binaries are
# installed (BACKENDS="sqlite" to skip it). Everything runs on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICES=${DEVICES:-100000}
BACKENDS=${BACKENDS:-sqlite postgres}
if [[ " $BACKENDS " == *" postgres "* ]] && ! [ -x "${PG_BIN:-/usr/local/bin}/initdb" ]; then
  echo "PostgreSQL binaries not found: benchmarking SQLite only" >&2
  BACKENDS=sqlite
fi
cargo build --release --quiet -p iothubgdr -p iothub-emulator
cargo build --release --quiet -p iothub-client --example page_devices
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
pids=()
pg_dir=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$pg_dir" ] && bash .ci/postgres.sh stop "$pg_dir"
  rm -rf "$work"
}
trap cleanup EXIT

json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
wait_for_file() { for _ in $(seq 1 600); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; return 1; }

printf '%-10s %-9s %14s %14s %8s %16s\n' devices backend "import dev/s" "client dev/s" ratio "server peak MB"
for n in $DEVICES; do
 for backend in $BACKENDS; do
  dir="$work/$n-$backend"; mkdir -p "$dir"
  if [ "$backend" = postgres ]; then
    # A fresh cluster per size, so every run starts from an empty database.
    eval "$(bash .ci/postgres.sh start)"
    pg_dir=$PG_TEST_DIR
    database=$IOTHUBGDR_TEST_POSTGRES_URL
  else
    database="sqlite://$dir/data/iothubgdr.db"
  fi
  "$bin/iothub-emulator" --listen 127.0.0.1:0 --hub-name bench-hub --devices "$n" --seed 7 \
      --ca-cert-out "$dir/ca.pem" --info-out "$dir/emulator.json" >"$dir/emulator.log" 2>&1 &
  pids+=($!)
  wait_for_file "$dir/emulator.json"
  host=$(json "$dir/emulator.json" hostname)
  addr=$(json "$dir/emulator.json" address)
  (umask 077; json "$dir/emulator.json" iothub_connection_string >"$dir/secret")

  # Baseline: the client alone, no server, no database.
  client=$("$bin/examples/page_devices" --connection-string-file "$dir/secret" \
      --ca-file "$dir/ca.pem" --resolve "$host=$addr")
  client_rate=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['devices_per_second']))" "$client")

  "$bin/iothubgdr" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --database "$database" \
      --iothub-ca-file "$dir/ca.pem" --iothub-resolve "$host=$addr" --log-level warn \
      >"$dir/server.out" 2>"$dir/server.log" &
  server=$!; pids+=($server)
  for _ in $(seq 1 300); do grep -q '^listening on ' "$dir/server.out" 2>/dev/null && break; sleep 0.1; done
  url=$(sed -n 's/^listening on //p' "$dir/server.out" | head -n1)
  app=$("$bin/iothubgdr" apps create --display-name bench --database "$database")
  id=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['client_id'])" "$app")
  secret=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['client_secret'])" "$app")
  token=$(curl -sf "$url/archivist/iam/v1/appidp/token" -d grant_type=client_credentials \
      --data-urlencode "client_id=$id" --data-urlencode "client_secret=$secret" |
      python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
  printf 'Authorization: Bearer %s\n' "$token" >"$dir/bearer"
  python3 - "$dir/secret" >"$dir/body.json" <<'PY'
import json, sys
print(json.dumps({"display_name": "bench", "secret": open(sys.argv[1]).read().strip()}))
PY
  # One Python process starts the import and polls it, so the benchmark's own polling costs
  # little CPU next to the server's.
  result=$(python3 - "$url" "$dir/bearer" "$dir/body.json" "$server" "${pids[0]}" <<'PY'
import json, sys, time, urllib.request
url, bearer_file, body_file, server_pid, emulator_pid = sys.argv[1:6]
header = open(bearer_file).read().split(":", 1)[1].strip()
def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0
def call(method, path, body=None):
    request = urllib.request.Request(url + path, data=body, method=method,
                                     headers={"Authorization": header, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)
cpu0 = (cpu(server_pid), cpu(emulator_pid))
started = time.monotonic()
operation = call("POST", "/archivist/v2/iothubgdr", open(body_file, "rb").read())
path = "/archivist/v2/" + operation["identity"]
while not operation["done"]:
    time.sleep(0.02)
    operation = call("GET", path)
seconds = time.monotonic() - started
part = operation.get("result") or operation.get("error")
print(json.dumps({"seconds": seconds, "imported": part["number_assets_imported"],
                  "server_cpu": cpu(server_pid) - cpu0[0], "emulator_cpu": cpu(emulator_pid) - cpu0[1],
                  "operation": operation}))
PY
)
  imported=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['imported'])" "$result")
  if [ "$imported" != "$n" ]; then echo "import of $n devices ended with $imported: $result" >&2; exit 1; fi
  peak_kb=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
  python3 - "$n" "$result" "$client_rate" "$peak_kb" "$backend" "$work/rates" <<'PY'
import json, sys
n, result, client, peak = int(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
backend, rates = sys.argv[5], sys.argv[6]
rate = n / result["seconds"]
with open(rates, "a") as out:
    out.write(f"{n} {backend} {rate}\n")
print(f"{n:<10} {backend:<9} {rate:14.0f} {client:14.0f} {rate / client:8.2f} {peak / 1024:16.1f}"
      f"   (server CPU {result['server_cpu']:.1f} s, emulator CPU {result['emulator_cpu']:.1f} s, wall {result['seconds']:.1f} s)")
PY
  kill "$server" "${pids[0]}" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  pids=()
  if [ -n "$pg_dir" ]; then bash .ci/postgres.sh stop "$pg_dir"; pg_dir=; fi
 done
done
# PostgreSQL beside SQLite, measured in this run.
python3 - "$work/rates" <<'PY'
import collections, sys
rates = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    n, backend, rate = line.split()
    rates[int(n)][backend] = float(rate)
for n, by in sorted(rates.items()):
    if "sqlite" in by and "postgres" in by:
        print(f"{n} devices: PostgreSQL {by['postgres']:.0f}/s is {by['postgres'] / by['sqlite']:.0%} of SQLite's {by['sqlite']:.0f}/s")
PY
