#!/usr/bin/env bash
# Installs the Debian packages Pankha needs to build, run and test, if any
# are missing.  Usage: scripts/deps.sh [build|test]
set -eu

packages=(gcc make libc6-dev pkg-config postgresql-15 postgresql-server-dev-15 libpq-dev
          libwebsockets-dev libev-dev libcjson-dev libsimdjson-dev libzstd-dev g++ libssl-dev zlib1g-dev python3)
# The dashboard is bundled with node (esbuild from package-lock.json).  Node
# may come from elsewhere with npm bundled; only ask Debian when absent.
command -v npm >/dev/null || packages+=(nodejs npm)
if [ "${1:-build}" = test ]; then
    # chromium: the dashboard's browser tests (driven by playwright-core)
    # haproxy: two bridges behind a load balancer (bridge/tests/test_lb)
    packages+=(haproxy libipc-run-perl python3-websockets python3-jsonschema node-ws chromium fonts-dejavu-core clang libclang-rt-14-dev)
    # units/tests: systemd-analyze; debian/tests: the Debian toolchain and a
    # clean root; docker/tests: podman (runc, see docker/containers.conf).
    packages+=(systemd curl dpkg-dev debhelper fakeroot lintian debootstrap
               podman buildah podman-compose runc netavark aardvark-dns iptables docker-compose)
fi

# one dpkg-query for all of them (one each took seconds on a busy machine)
installed=" $(dpkg-query -W -f='${Package}\t${Status}\n' "${packages[@]}" 2>/dev/null |
              awk -F'\t' '$2 ~ /install ok installed/ {print $1}' | tr '\n' ' ') "
missing=()
for p in "${packages[@]}"; do
    [[ $installed == *" $p "* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -q >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
