#!/usr/bin/env bash
# PgBouncer in transaction mode on loopback, in front of a PostgreSQL server, with client TLS
# from a self-signed certificate made here: what a Neon `-pooler` endpoint is to the service.
#
#   tests/pgbouncer/setup.sh [PORT [STATE_DIR]]   start (or restart) it; prints its URL
#   tests/pgbouncer/setup.sh stop [PORT [STATE_DIR]]
#
# PORT defaults to 18201, STATE_DIR to $TMPDIR/todo-api-pgbouncer-PORT; PGBOUNCER_UPSTREAM
# (host:port, default 127.0.0.1:5432) is the PostgreSQL it pools. Installs Debian's pgbouncer
# when it is missing. Any failure exits non-zero.
set -euo pipefail

action=start
if [[ "${1:-}" == stop ]]; then action=stop; shift; fi
port="${1:-18201}"
state="${2:-${TMPDIR:-/tmp}/todo-api-pgbouncer-$port}"
upstream="${PGBOUNCER_UPSTREAM:-127.0.0.1:5432}"
export PATH="$PATH:/usr/sbin:/sbin"

stop() {
    local pidfile="$state/pgbouncer.pid"
    [[ -f "$pidfile" ]] || return 0
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

mkdir -p "$state"
stop
[[ "$action" == stop ]] && exit 0

if ! command -v pgbouncer >/dev/null; then
    echo "installing pgbouncer (Debian package)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq pgbouncer >&2
    # Only our own instance, on our own port: the package's service stays off.
    if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
        systemctl disable --now pgbouncer >&2 2>&1 || true
    fi
fi

run_as=()
owner="$(id -un)"
if [[ "$(id -u)" == 0 ]]; then
    # pgbouncer refuses to run as root.
    owner=postgres
    run_as=(-u "$owner")
fi

if [[ ! -f "$state/server.crt" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$state/server.key" -out "$state/server.crt" 2>/dev/null
fi
echo '"postgres" ""' >"$state/userlist.txt"
cat >"$state/pgbouncer.ini" <<INI
[databases]
* = host=${upstream%:*} port=${upstream##*:}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
pool_mode = transaction
auth_type = trust
auth_file = $state/userlist.txt
admin_users = postgres
client_tls_sslmode = require
client_tls_key_file = $state/server.key
client_tls_cert_file = $state/server.crt
; Neon's proxy consumes \`options\` (endpoint=...) before its PgBouncer sees it.
ignore_startup_parameters = extra_float_digits, options
max_client_conn = 500
default_pool_size = 20
query_wait_timeout = 30
logfile = $state/pgbouncer.log
pidfile = $state/pgbouncer.pid
INI
chmod 600 "$state/server.key"
chown -R "$owner" "$state"

pgbouncer -d -q "${run_as[@]}" "$state/pgbouncer.ini"
for _ in $(seq 50); do
    pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && break
    sleep 0.1
done
if ! pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
    echo "error: pgbouncer did not start on 127.0.0.1:$port; see $state/pgbouncer.log" >&2
    tail -5 "$state/pgbouncer.log" >&2 || true
    exit 1
fi
echo "postgresql://postgres@127.0.0.1:$port/test?sslmode=require"
