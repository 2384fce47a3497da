#!/bin/bash
# pankha-probe [PATH]: exits 0 when the bridge in this container answers
# PATH (default /readyz) with 200; the image's health check.  The image has
# no HTTP client, and bash's /dev/tcp is enough for one request.
port=${PANKHA_LISTEN##*:}
exec 3<>"/dev/tcp/127.0.0.1/${port:-8080}" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "${1:-/readyz}" >&3
IFS= read -r -t 4 status <&3 || exit 1
case $status in
*" 200 "*) exit 0 ;;
*) echo "$status"; exit 1 ;;
esac
