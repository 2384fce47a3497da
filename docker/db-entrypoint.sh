#!/bin/bash
# Entrypoint of the pankha-db image.  At the first start (an empty volume)
# it makes the cluster with pankha preloaded, the database with the
# extension, the bridge's login role (a member of pankha_bridge and
# nothing else; its password from a file, a compose secret) and, for the
# demo stack, one registered agent per id in PANKHA_DEMO_AGENTS with its
# token in $PANKHA_AGENT_TOKENS/<id>.token.  Every start then runs
# postgres in the foreground, and brings the extension up to the version
# the image ships once the server is up.
#
# The superuser gets no password: it logs in over the Unix socket only
# (podman exec -it <db> psql pankha).
set -eu
db=${PANKHA_DATABASE:-pankha}
bridge_user=${PANKHA_BRIDGE_USER:-bridge}
password_file=${PANKHA_BRIDGE_PASSWORD_FILE:-/run/secrets/bridge_db_password}
tokens=${PANKHA_AGENT_TOKENS:-/run/pankha/agents}

sql() { psql -h "$1" -v ON_ERROR_STOP=1 -qAtX "${@:2}"; }

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ ! -s "$password_file" ]; then
        echo "db-entrypoint: no password for the bridge's role in $password_file" >&2
        exit 1
    fi
    initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    cat >>"$PGDATA/postgresql.conf" <<EOT

# pankha (db-entrypoint.sh)
listen_addresses = '*'
shared_preload_libraries = 'pankha'
pankha.database = '$db'
EOT
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

    # Set up on a private socket, so that nobody (nor the health check)
    # sees a server before it is ready.
    sock=$(mktemp -d)
    pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -c unix_socket_directories='$sock'" start
    sql "$sock" -d postgres -v db="$db" -v role="$bridge_user" -v password="$(cat "$password_file")" <<'EOT'
CREATE DATABASE :"db";
\connect :"db"
CREATE EXTENSION pankha;
CREATE ROLE :"role" LOGIN PASSWORD :'password' IN ROLE pankha_bridge;
EOT
    for id in ${PANKHA_DEMO_AGENTS:-}; do
        echo "SELECT pankha.register_agent(:'id', :'id' || ' (simulated)', :'id')" |
            sql "$sock" -d "$db" -v id="$id" >"$tokens/$id.token.tmp"
        mv "$tokens/$id.token.tmp" "$tokens/$id.token"
    done
    pg_ctl -D "$PGDATA" -w -s -m fast stop
    rmdir "$sock"
    echo "db-entrypoint: cluster made; database $db with pankha; role $bridge_user in pankha_bridge${PANKHA_DEMO_AGENTS:+; agents $PANKHA_DEMO_AGENTS}"
fi

# A newer image may ship a newer extension: update it once the server
# answers (in the background, so that postgres stays this process).
(
    for _ in $(seq 120); do
        pg_isready -q -h "${PGHOST:-/run/postgresql}" -d "$db" && break
        sleep 0.5
    done
    sql "${PGHOST:-/run/postgresql}" -d "$db" -c "ALTER EXTENSION pankha UPDATE" ||
        echo "db-entrypoint: ALTER EXTENSION pankha UPDATE failed" >&2
) &
exec postgres -D "$PGDATA" "$@"
