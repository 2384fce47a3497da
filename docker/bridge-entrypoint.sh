#!/bin/sh
# Entrypoint of the pankha-bridge image.  The database password comes
# from a file (a compose secret, PANKHA_DB_PASSWORD_FILE) and reaches
# libpq as a private pgpass file, so it is in no image, command line,
# compose file or environment.
set -eu
if [ -n "${PANKHA_DB_PASSWORD_FILE:-}" ]; then
    umask 077
    pgpass=$(mktemp)
    # pgpass escapes ':' and '\' with a backslash.
    printf '*:*:*:*:%s\n' "$(sed 's/[\\:]/\\&/g' "$PANKHA_DB_PASSWORD_FILE")" >"$pgpass"
    export PGPASSFILE="$pgpass"
    unset PANKHA_DB_PASSWORD_FILE
fi
# Serve the dashboard only when there is a page: with --dashboard, lws
# 4.1.6's file mount at / also takes /healthz and /readyz, which then get
# no answer (a bridge bug), and the health check would fail for nothing.
if [ -n "${PANKHA_DASHBOARD:-}" ] && [ ! -f "$PANKHA_DASHBOARD/index.html" ]; then
    echo "bridge-entrypoint: no $PANKHA_DASHBOARD/index.html: serving no dashboard" >&2
    unset PANKHA_DASHBOARD
fi
exec pankha-bridge "$@"
