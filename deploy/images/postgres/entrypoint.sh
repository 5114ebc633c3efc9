#!/bin/bash
# PostgreSQL 15 (Debian's package). On an empty data directory: initdb with POSTGRES_USER as the superuser
# (password POSTGRES_PASSWORD, scram-sha-256 over TCP) and a database POSTGRES_DB owned by it. Then the server,
# listening on the container's network.
set -euo pipefail
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:?}"
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
install -d -o postgres -g postgres -m 0700 "$data"
if [[ ! -s "$data/PG_VERSION" ]]; then
  password_file="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
  chown postgres "$password_file"
  runuser -u postgres -- "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile="$password_file" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
  rm -f "$password_file"
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
  echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\"" \
    | runuser -u postgres -- "$bin/postgres" --single -D "$data" -j postgres >/dev/null
fi
exec runuser -u postgres -- "$bin/postgres" -D "$data" -c listen_addresses='*' \
  -c unix_socket_directories=/tmp
