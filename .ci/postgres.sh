#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 cluster for the tests: a temporary data directory, a free
# loopback port, trust authentication on loopback only. initdb refuses to run as root, so
# as root the cluster belongs to the `postgres` user.
#
#   eval "$(bash .ci/postgres.sh start)"   # exports IOTHUBGDR_TEST_POSTGRES_URL and PG_TEST_DIR
#   bash .ci/postgres.sh stop "$PG_TEST_DIR"
set -euo pipefail

bin=${PG_BIN:-/usr/local/bin}
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "${1:-}" in
  start)
    dir=$(mktemp -d /tmp/iothubgdr-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1
    # Throwaway data: durability off for speed; enough connections for parallel tests.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
      "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB" \
      start >/dev/null
    echo "export IOTHUBGDR_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
    echo "export PG_TEST_DIR=$dir"
    ;;
  stop)
    dir=${2:?the directory printed by start}
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start | stop DIR" >&2
    exit 2
    ;;
esac
