#!/usr/bin/env bash
# Import benchmark, everything on loopback, every comparison measured in the same run.
#
#   bash bench/import.sh                          # both scenarios below
#   SCENARIOS=loopback DEVICES="100000 1000000" bash bench/import.sh
#   SCENARIOS=loopback BASELINE_BIN=../main-before/target/release ROUNDS=5 bash bench/import.sh
#   SCENARIOS=azure AZURE_DEVICES=100000 LATENCY_MS=150 QUOTA=1000 bash bench/import.sh
#   SCENARIOS=export EXPORT_DEVICES=100000 bash bench/import.sh
#
# loopback: seeds N devices in the IoT Hub emulator, imports them through the real server,
#   and compares the end-to-end rate with the rate at which the IoT Hub client alone pages
#   through the same devices. Prints, per size and backend, devices/s both ways, their ratio,
#   and the server's peak resident memory (VmHWM); then PostgreSQL's rate as a share of
#   SQLite's. The first import records every device with its NewAsset event; the same
#   server then imports the unchanged hub again, which must write no event at all, and its
#   rate is reported against the client-alone rate too. BASELINE_BIN=<dir with another
#   build's iothubgdr> also imports the same hub with that build first (say, main before a
#   change), for a before/after ratio measured in the same run. ROUNDS (default 3) repeats
#   the imports, each into a fresh database, and the summary reports medians: one import
#   of a few seconds on 2 shared cores varies by 10-20% from run to run. PostgreSQL runs
#   on a throwaway cluster (.ci/postgres.sh) when its binaries are installed
#   (BACKENDS="sqlite" to skip it).
# azure: a hub that looks like Azure: LATENCY_MS per request (default 150; real hubs answer
#   a query page in 100-200 ms) and a quota of QUOTA queries a minute (default 1000, one S3
#   unit). Imports AZURE_DEVICES (default 100,000) with the server paced at the quota and
#   its parallel readers, then with one sequential reader (--iothub-readers 1), and prints
#   both beside the quota's own minimum (pages / quota): no reader can beat it.
# export: the export path. One emulator with EXPORT_DEVICES (default 100,000) and a local
#   Azurite (npm, installed by scripts/azurite.sh) as the customer's blob container; the
#   same devices imported on loopback through twin queries, then through an export job
#   (job, blob written into Azurite, read back, written to SQLite), each into a fresh
#   database. Prints both rates and the export path's share of the query path's (aim: 80%+).
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-"loopback azure"}
DEVICES=${DEVICES:-100000}
ROUNDS=${ROUNDS:-3}
BACKENDS=${BACKENDS:-sqlite postgres}
if [[ " $BACKENDS " == *" postgres "* ]] && ! [ -x "${PG_BIN:-/usr/local/bin}/initdb" ]; then
  echo "PostgreSQL binaries not found: benchmarking SQLite only" >&2
  BACKENDS=sqlite
fi
AZURE_DEVICES=${AZURE_DEVICES:-100000}
EXPORT_DEVICES=${EXPORT_DEVICES:-100000}
LATENCY_MS=${LATENCY_MS:-150}
QUOTA=${QUOTA:-1000}
# PROFILE=dev measures an unoptimised build: meaningless for `loopback` (CPU-bound), but the
# `azure` scenario is bound by latency and quota, which the build does not change.
PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" --quiet -p iothubgdr -p iothub-emulator
cargo build --profile "$PROFILE" --quiet -p iothub-client --example page_devices
[ "$PROFILE" = dev ] && profile_dir=debug || profile_dir=$PROFILE
bin=${CARGO_TARGET_DIR:-target}/$profile_dir
work=$(mktemp -d)
pids=()
pg_dir=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$pg_dir" ] && bash .ci/postgres.sh stop "$pg_dir"
  [ -n "${BENCH_KEEP:-}" ] && cp -r "$work" "$BENCH_KEEP"
  rm -rf "$work"
}
trap cleanup EXIT

json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
wait_for_file() { for _ in $(seq 1 600); do [ -s "$1" ] && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; return 1; }

# start_emulator DIR DEVICES [emulator flags...]: sets $emulator_pid, $host, $addr; the
# connection string goes to DIR/secret.
start_emulator() {
  local dir=$1 n=$2; shift 2
  mkdir -p "$dir"
  "$bin/iothub-emulator" --listen 127.0.0.1:0 --hub-name bench-hub --devices "$n" --seed 7 \
      --ca-cert-out "$dir/ca.pem" --info-out "$dir/emulator.json" "$@" >"$dir/emulator.log" 2>&1 &
  emulator_pid=$!; pids+=($emulator_pid)
  wait_for_file "$dir/emulator.json"
  host=$(json "$dir/emulator.json" hostname)
  addr=$(json "$dir/emulator.json" address)
  (umask 077; json "$dir/emulator.json" iothub_connection_string >"$dir/secret")
}

# start_server DIR [serve flags...]: starts a server ($server_bin, else this build) on a
# fresh database in DIR ($database when set, else SQLite in DIR) and sets $url and
# $server_pid (the caller stops it); DIR/bearer and DIR/body.json are the requests' parts.
start_server() {
  local dir=$1; shift
  local db=${database:-sqlite://$dir/data/iothubgdr.db}
  local server_bin=${server_bin:-$bin}
  "$server_bin/iothubgdr" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --database "$db" \
      --iothub-ca-file "$dir/../ca.pem" --iothub-resolve "$host=$addr" --log-level "${BENCH_LOG_LEVEL:-warn}" "$@" \
      >"$dir/server.out" 2>"$dir/server.log" &
  server_pid=$!; pids+=($server_pid)
  for _ in $(seq 1 300); do grep -q '^listening on ' "$dir/server.out" 2>/dev/null && break; sleep 0.1; done
  local app id secret token
  url=$(sed -n 's/^listening on //p' "$dir/server.out" | head -n1)
  app=$("$server_bin/iothubgdr" apps create --display-name bench --database "$db")
  id=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['client_id'])" "$app")
  secret=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['client_secret'])" "$app")
  token=$(curl -sf "$url/archivist/iam/v1/appidp/token" -d grant_type=client_credentials \
      --data-urlencode "client_id=$id" --data-urlencode "client_secret=$secret" |
      python3 -c "import json,sys; print(json.load(sys.stdin)['access_token'])")
  printf 'Authorization: Bearer %s\n' "$token" >"$dir/bearer"
  python3 - "$dir/../secret" "${container_file:-}" >"$dir/body.json" <<'PY'
import json, sys
body = {"display_name": "bench", "secret": open(sys.argv[1]).read().strip()}
if sys.argv[2]:
    body["output_blob_container_uri"] = open(sys.argv[2]).read().strip()
print(json.dumps(body))
PY
}

# import_once DIR DEVICES: imports the emulator's devices through the server started in DIR,
# checks every one arrived, and sets $result (JSON: seconds, CPU, the operation, and the
# events recorded meanwhile).
import_once() {
  local dir=$1 n=$2
  # One Python process starts the import and polls it, so the benchmark's own polling costs
  # little CPU next to the server's.
  # Writes of earlier runs go to disk first, so their writeback is not timed here.
  sync
  local postmaster=0
  [ -n "${pg_dir:-}" ] && postmaster=$(head -n1 "$pg_dir/data/postmaster.pid")
  result=$(python3 - "$url" "$dir/bearer" "$dir/body.json" "$server_pid" "$emulator_pid" "$postmaster" <<'PY'
import json, os, sys, time, urllib.request
url, bearer_file, body_file, server_pid, emulator_pid, postmaster = sys.argv[1:7]
header = open(bearer_file).read().split(":", 1)[1].strip()
def cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0
def database_cpu():
    # PostgreSQL's CPU: the postmaster with its reaped children, plus its live backends.
    if postmaster == "0":
        return 0.0
    def stat(pid):
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    fields = stat(postmaster)
    total = sum(int(f) for f in fields[11:15]) / 100.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            child = stat(pid)
        except OSError:
            continue
        if child[1] == postmaster:
            total += (int(child[11]) + int(child[12])) / 100.0
    return total
def call(method, path, body=None):
    request = urllib.request.Request(url + path, data=body, method=method,
                                     headers={"Authorization": header, "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)
def events():
    # A server without an events route (a baseline build) answers 404: no events.
    request = urllib.request.Request(url + "/archivist/v2/assets/-/events?page_size=1",
                                     headers={"Authorization": header, "X-Request-Total-Count": "true"})
    try:
        with urllib.request.urlopen(request) as answer:
            return int(answer.headers["X-Total-Count"])
    except urllib.error.HTTPError as err:
        if err.code != 404:
            raise
        return 0
events0 = events()
cpu0 = (cpu(server_pid), cpu(emulator_pid), database_cpu())
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
                  "database_cpu": database_cpu() - cpu0[2],
                  "events": events() - events0, "operation": operation}))
PY
)
  local imported
  imported=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['imported'])" "$result")
  if [ "$imported" != "$n" ]; then echo "import of $n devices ended with $imported: $result" >&2; exit 1; fi
}

# run_import DIR DEVICES [serve flags...]: start_server, then one import_once.
run_import() {
  local dir=$1 n=$2; shift 2
  start_server "$dir" "$@"
  import_once "$dir" "$n"
}

stop() { kill "$@" 2>/dev/null || true; wait "$@" 2>/dev/null || true; }

# event_lists DIR BACKEND: after a first import, times event lists over the API (median of
# five requests each): a page of every event, and filters that match no event, which must
# look at all of them (an inverted index serves events' `event_attributes`; `asset_attributes`
# are tested row by row), with and without the total count. Appends to $work/lists.
event_lists() {
  python3 - "$url" "$1/bearer" "$2" "$work/lists" <<'PY'
import statistics, sys, time, urllib.request
url, bearer_file, backend, out = sys.argv[1:5]
header = open(bearer_file).read().split(":", 1)[1].strip()
def ms(query, count):
    headers = {"Authorization": header}
    if count:
        headers["X-Request-Total-Count"] = "true"
    times = []
    for _ in range(5):
        started = time.monotonic()
        with urllib.request.urlopen(urllib.request.Request(
                url + "/archivist/v2/assets/-/events?" + query, headers=headers)) as answer:
            answer.read()
        times.append((time.monotonic() - started) * 1000)
    return statistics.median(times)
with open(out, "a") as lists:
    for name, query in (("a page of events", "page_size=100"),
                        ("event_attributes.X=none", "page_size=100&event_attributes.arc_display_type=none"),
                        ("asset_attributes.X=none", "page_size=100&asset_attributes.iothub_status=none")):
        lists.write(f"{backend}\t{name}\t{ms(query, False):.1f}\t{ms(query, True):.1f}\n")
PY
}

peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$server_pid/status"; }

# report DEVICES BACKEND RUN RESULT CLIENT_RATE PEAK_KB: one line of the loopback table.
report() {
  python3 - "$@" "$work/rates" <<'PY'
import json, sys
n, backend, run, result, client, peak, rates = sys.argv[1:8]
n, result, client, peak = int(n), json.loads(result), float(client), int(peak)
rate = n / result["seconds"]
with open(rates, "a") as out:
    out.write(f"{n} {backend} {run} {rate} {client}\n")
print(f"{n:<10} {backend:<9} {run:<12} {rate:14.0f} {client:14.0f} {rate / client:8.2f} {result['events']:9d} {peak / 1024:10.1f}"
      f"   (CPU: server {result['server_cpu']:.1f} s, emulator {result['emulator_cpu']:.1f} s, "
      f"PostgreSQL {result['database_cpu']:.1f} s; wall {result['seconds']:.1f} s)")
PY
}

# fresh_postgres: a fresh throwaway cluster for the next import, so it starts from an
# empty database (and no other run's autovacuum or writeback lands in its time).
fresh_postgres() {
  [ -n "$pg_dir" ] && bash .ci/postgres.sh stop "$pg_dir"
  eval "$(bash .ci/postgres.sh start)"
  pg_dir=$PG_TEST_DIR
  database=$IOTHUBGDR_TEST_POSTGRES_URL
}

loopback() {
  printf '%-10s %-9s %-12s %14s %14s %8s %9s %10s\n' devices backend import "import dev/s" "client dev/s" ratio events "peak MB"
  for n in $DEVICES; do
    for backend in $BACKENDS; do
      local dir="$work/loopback-$n-$backend"
      start_emulator "$dir" "$n"
      # Baseline: the client alone, no server, no database.
      local client client_rate
      client=$("$bin/examples/page_devices" --connection-string-file "$dir/secret" \
          --ca-file "$dir/ca.pem" --resolve "$host=$addr")
      client_rate=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['devices_per_second']))" "$client")
      # ROUNDS pairs of imports (the baseline build's, then this build's), each into a fresh
      # database: the summary compares medians, as one import of a few seconds on shared
      # cores can be slowed by anything else the machine does.
      for round in $(seq 1 "$ROUNDS"); do
        if [ -n "${BASELINE_BIN:-}" ]; then
          database=
          [ "$backend" = postgres ] && fresh_postgres
          mkdir -p "$dir/baseline-$round"
          server_bin=$BASELINE_BIN run_import "$dir/baseline-$round" "$n"
          report "$n" "$backend" "baseline/$round" "$result" "$client_rate" "$(peak_kb)"
          stop "$server_pid"
        fi
        database=
        [ "$backend" = postgres ] && fresh_postgres
        mkdir -p "$dir/run-$round"
        run_import "$dir/run-$round" "$n"
        report "$n" "$backend" "first/$round" "$result" "$client_rate" "$(peak_kb)"
        [ "$round" = 1 ] && event_lists "$dir/run-$round" "$n $backend"
        # The same hub again, unchanged, into the same database: nothing may be written.
        import_once "$dir/run-$round" "$n"
        report "$n" "$backend" "unchanged/$round" "$result" "$client_rate" "$(peak_kb)"
        local again_events
        again_events=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['events'])" "$result")
        if [ "$again_events" != 0 ]; then echo "the unchanged re-import wrote $again_events events" >&2; exit 1; fi
        stop "$server_pid"
        if [ -n "$pg_dir" ]; then bash .ci/postgres.sh stop "$pg_dir"; pg_dir=; fi
      done
      stop "$emulator_pid"
      pids=()
      database=
    done
  done
  if [ -s "$work/lists" ]; then
    echo "event lists after the first import (ms, median of 5; then with X-Request-Total-Count):"
    awk -F'\t' '{printf "  %-20s %-26s %8s ms %8s ms\n", $1, $2, $3, $4}' "$work/lists"
  fi
  # Medians over the rounds; PostgreSQL beside SQLite, measured in this run.
  python3 - "$work/rates" <<'PY'
import collections, statistics, sys
rates = collections.defaultdict(lambda: collections.defaultdict(list))
client = {}
for line in open(sys.argv[1]):
    n, backend, run, rate, client_rate = line.split()
    rates[(int(n), backend)][run.split("/")[0]].append(float(rate))
    client[(int(n), backend)] = float(client_rate)
median = {}
for (n, backend), by in sorted(rates.items()):
    m = {run: statistics.median(values) for run, values in by.items()}
    median[(n, backend)] = m
    rounds = len(by["first"])
    print(f"{n} devices on {backend}, median of {rounds} round(s):")
    if "baseline" in m:
        # Each round's pair ran back to back: the median of their ratios.
        ratios = [f / b for f, b in zip(by["first"], by["baseline"])]
        pairs = ", ".join(f"{r:.0%}" for r in ratios)
        print(f"  first import with events: {m['first']:.0f}/s; against the baseline build's {m['baseline']:.0f}/s, median {statistics.median(ratios):.0%} (round by round: {pairs}; aim: 80%+)")
    print(f"  unchanged re-import: {m['unchanged']:.0f}/s, {m['unchanged'] / client[(n, backend)]:.2f} of the client alone's {client[(n, backend)]:.0f}/s (aim: 0.90+)")
for (n, backend), m in sorted(median.items()):
    if backend == "postgres" and (n, "sqlite") in median:
        s = median[(n, "sqlite")]
        print(f"{n} devices: PostgreSQL {m['first']:.0f}/s is {m['first'] / s['first']:.0%} of SQLite's {s['first']:.0f}/s")
PY
}

azure() {
  local n=$AZURE_DEVICES dir="$work/azure"
  database=
  echo "azure-like hub: $n devices, ${LATENCY_MS} ms per request, quota $QUOTA queries/minute"
  start_emulator "$dir" "$n" --latency-ms "$LATENCY_MS" --queries-per-minute "$QUOTA"
  mkdir -p "$dir/parallel" "$dir/sequential"
  run_import "$dir/parallel" "$n" --iothub-queries-per-minute "$QUOTA"
  local parallel=$result
  stop "$server_pid"
  # Let the emulator's quota minute roll, so the second run starts from a full quota too.
  sleep 61
  run_import "$dir/sequential" "$n" --iothub-queries-per-minute "$QUOTA" --iothub-readers 1
  local sequential=$result
  stop "$server_pid"
  python3 - "$n" "$QUOTA" "$parallel" "$sequential" <<'PY'
import json, math, sys
n, quota = int(sys.argv[1]), int(sys.argv[2])
parallel, sequential = json.loads(sys.argv[3]), json.loads(sys.argv[4])
pages = math.ceil(n / 100)
minimum = pages / quota * 60
print(f"  quota's minimum ({pages} pages / {quota} a minute): {minimum:7.1f} s")
for name, run in (("parallel readers (default)", parallel), ("one sequential reader", sequential)):
    s = run["seconds"]
    print(f"  {name:<36} {s:7.1f} s  {s / minimum:5.2f} x minimum  {n / s:8.0f} devices/s"
          f"  (server CPU {run['server_cpu']:.1f} s)")
PY
  stop "$emulator_pid"
  pids=()
}

export_path() {
  local n=$EXPORT_DEVICES dir="$work/export"
  database=
  AZURITE_BLOB_BIN=${AZURITE_BLOB_BIN:-$(bash scripts/azurite.sh)}
  export AZURITE_BLOB_BIN
  echo "export path: $n devices, on loopback, SQLite, Azurite as the blob container"
  start_emulator "$dir" "$n" --with-azurite
  local blob_resolve blob_ca
  blob_resolve=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['blob']['blob_resolve'])" "$dir/emulator.json")
  blob_ca=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['blob']['blob_ca_cert_path'])" "$dir/emulator.json")
  (umask 077; python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['blob']['output_blob_container_uri'])" "$dir/emulator.json" >"$dir/container")
  mkdir -p "$dir/query" "$dir/export"
  container_file=
  run_import "$dir/query" "$n"
  local query=$result
  stop "$server_pid"
  container_file="$dir/container"
  run_import "$dir/export" "$n" --blob-resolve "$blob_resolve" --blob-ca-file "$blob_ca"
  local exported=$result
  container_file=
  stop "$server_pid"
  python3 - "$n" "$query" "$exported" <<'PY'
import json, sys
n, query, exported = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
q, e = n / query["seconds"], n / exported["seconds"]
for name, run, rate in (("twin queries (loopback)", query, q), ("export job + blob (Azurite)", exported, e)):
    print(f"  {name:<30} {run['seconds']:7.2f} s {rate:9.0f} devices/s"
          f"  (server CPU {run['server_cpu']:.1f} s, emulator CPU {run['emulator_cpu']:.1f} s)")
print(f"  export path rate / query path rate: {e / q:.2f} (aim: 0.80 or more)")
PY
  stop "$emulator_pid"
  pids=()
}

for scenario in $SCENARIOS; do
  case $scenario in
    loopback) loopback ;;
    azure) azure ;;
    export) export_path ;;
    *) echo "unknown scenario $scenario (loopback, azure, export)" >&2; exit 2 ;;
  esac
done
