# Shell helpers shared by scripts/run-tests, scripts/demo, the integration
# tests and the benchmarks.  Source it; it defines functions only.
#
# PostgreSQL refuses to run as root, so when we are root every server
# command runs as the unprivileged user in $PANKHA_PG_USER (postgres).

PANKHA_TOP=${PANKHA_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PANKHA_PG_USER=${PANKHA_PG_USER:-postgres}

# pk_as_pg CMD...: run CMD as the database owner (itself when not root).
pk_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$PANKHA_PG_USER" -- "$@"
    else
        "$@"
    fi
}

# pk_free_port: print a TCP port on 127.0.0.1 that is free right now.
pk_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pk_pg_tree DEST: make a private copy of the PostgreSQL installation under
# DEST with this checkout's extension installed into it, and print its
# bindir.  PostgreSQL finds its share and lib directories relative to its
# binaries, so tests never touch (or depend on) the system installation.
pk_pg_tree() {
    local dest=$1 bindir libdir sharedir
    bindir=$(pg_config --bindir)
    libdir=$(dirname "$bindir")
    sharedir=$(pg_config --sharedir)
    mkdir -p "$dest$(dirname "$libdir")" "$dest$(dirname "$sharedir")"
    cp -a "$libdir" "$dest$(dirname "$libdir")/"
    cp -a "$sharedir" "$dest$(dirname "$sharedir")/"
    make -s -C "$PANKHA_TOP" install-extension DESTDIR="$dest" >/dev/null
    chmod -R a+rX "$dest"
    echo "$dest$bindir"
}

# pk_cluster_init BINDIR DATADIR [CONF-LINE...]: initdb a cluster owned by
# the database user, with pankha preloaded and the extra settings given.
# It runs with fsync on, as an operator's would: a caller that wants
# "fsync = off" passes it, and says beside it why nothing it checks
# depends on durability (initdb then skips its own sync too).
pk_cluster_init() {
    local bindir=$1 datadir=$2 line nosync=; shift 2
    for line in "$@"; do
        [[ $line =~ ^fsync[[:space:]]*=[[:space:]]*\'?off ]] && nosync=--no-sync
    done
    mkdir -p "$datadir"
    [ "$(id -u)" -ne 0 ] || chown "$PANKHA_PG_USER" "$datadir"
    chmod 700 "$datadir"
    pk_as_pg "$bindir/initdb" -D "$datadir" -A trust -U postgres $nosync >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$datadir'"
        echo "shared_preload_libraries = 'pankha'"
        for line in "$@"; do echo "$line"; done
    } | pk_as_pg tee -a "$datadir/postgresql.conf" >/dev/null
}

# pk_bridge_login BINDIR PORT [DBNAME]: create, once per cluster, the role a
# bridge connects as -- a login whose only privilege is membership in
# pankha_bridge, as an operator deploys it (never the owner or a
# superuser) -- and print the conninfo to give the bridge's --db.  Run it
# after CREATE EXTENSION pankha, which creates pankha_bridge.
PANKHA_BRIDGE_USER=${PANKHA_BRIDGE_USER:-pankha_bridge_login}
pk_bridge_login() {
    local bindir=$1 port=$2 db=${3:-pankha}
    "$bindir/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d "$db" \
        -v user="$PANKHA_BRIDGE_USER" >/dev/null <<'SQL' || return 1
SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'user') AS missing \gset
\if :missing
CREATE ROLE :"user" LOGIN IN ROLE pankha_bridge;
\endif
SQL
    echo "host=127.0.0.1 port=$port user=$PANKHA_BRIDGE_USER dbname=$db"
}

# pk_cluster_start BINDIR DATADIR PORT: start it on 127.0.0.1:PORT.
pk_cluster_start() {
    pk_as_pg "$1/pg_ctl" -D "$2" -o "-p $3" -l "$2/server.log" -w -t 60 start >/dev/null
}

# pk_cluster_stop BINDIR DATADIR: stop it (fast), ignoring a stopped one.
pk_cluster_stop() {
    pk_as_pg "$1/pg_ctl" -D "$2" -m fast -w stop >/dev/null 2>&1 || true
}
