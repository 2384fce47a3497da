#!/usr/bin/env bash
# Makes the Debian 12 base image the Dockerfiles build FROM where no
# container registry is reachable, and prints its name:
#
#   docker/base-image.sh            # -> localhost/pankha-base:bookworm
#   docker/base-image.sh --tarball  # only the root tarball; prints its path
#
# debootstrap --variant=minbase from the Debian mirror apt already uses
# (/etc/apt/sources.list*), cached as a tarball in $PANKHA_CACHE (default
# /var/cache/pankha-test, outside any checkout) and imported with
# podman import.  The debian/ package test unpacks the same tarball as a
# chroot.  Takes about a minute the first time, nothing afterwards.
set -eu
cache=${PANKHA_CACHE:-/var/cache/pankha-test}
image=${PANKHA_BASE_IMAGE:-localhost/pankha-base:bookworm}
tarball="$cache/bookworm-minbase.tar"

# The first Debian archive (not security) apt is configured with, in
# either sources format.
mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case $f in
        *.sources) awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ && u !~ /security/ {print u; exit}' "$f" ;;
        *) awk '$1 == "deb" && $3 == "bookworm" && $2 !~ /security/ {print $2; exit}' "$f" | sed 's/\[.*\] *//' ;;
        esac
    done | head -1
}

make_tarball() {
    local url root
    url=$(mirror)
    [ -n "$url" ] || { echo "no bookworm mirror in /etc/apt/sources.list*" >&2; exit 1; }
    root=$(mktemp -d "$cache/root.XXXXXX")
    echo "debootstrap --variant=minbase bookworm from $url" >&2
    debootstrap --variant=minbase bookworm "$root" "$url" >"$root.log" 2>&1 ||
        { tail -20 "$root.log" >&2; exit 1; }
    # The same archives as the host: updates and security beside the release.
    cat >"$root/etc/apt/sources.list" <<EOT
deb $url bookworm main
deb $url bookworm-updates main
deb ${url%/debian}/debian-security bookworm-security main
EOT
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    chmod 755 "$root"     # mktemp made it 0700, and it becomes /
    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root" "$root.log"
}

mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
[ -s "$tarball" ] || make_tarball
if [ "${1:-}" = --tarball ]; then
    echo "$tarball"
    exit 0
fi
if ! podman image exists "$image"; then
    podman import --quiet "$tarball" "$image" >/dev/null
fi
echo "$image"
