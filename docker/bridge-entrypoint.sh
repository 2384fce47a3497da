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
exec pankha-bridge "$@"
