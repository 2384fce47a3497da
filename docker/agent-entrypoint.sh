#!/bin/sh
# Entrypoint of the pankha-agent image.  In the demo stack the database
# container registers the agents and writes their tokens at its first
# start, so the agent waits (at most PANKHA_TOKEN_WAIT seconds) for the
# file PANKHA_AGENT_TOKEN_FILE names before it starts.
set -eu
if [ -n "${PANKHA_AGENT_TOKEN_FILE:-}" ]; then
    waited=0
    until [ -s "$PANKHA_AGENT_TOKEN_FILE" ]; do
        if [ "$waited" -ge "${PANKHA_TOKEN_WAIT:-300}" ]; then
            echo "agent-entrypoint: no token in $PANKHA_AGENT_TOKEN_FILE after $waited s" >&2
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
fi
exec pankha-agent "$@"
