#!/usr/bin/env bash
# The Debian image of the distribution suite (tests/distro_suites.rs): Debian bookworm
# made with debootstrap, with python3, CPython's own regression tests
# (libpython3.11-testsuite) and PostgreSQL, as a plain tar for `hull import`; and the reference run
# of the suite's CPython modules in a plain chroot of the same tree on this host (its
# own mount and PID namespaces with /proc, /dev/shm and /tmp). Cached: prints the
# directory holding image.tar, reference.txt and modules.txt.
#
#   tests/lab/debian-image.sh          (as root: debootstrap and chroot need it)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hull/test-images
say() { echo "debian-image: $*" >&2; }
die() { echo "debian-image: error: $*" >&2; exit 1; }

suite=bookworm
mirror=${HULL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,libpython3.11-testsuite,postgresql
# CPython's modules that exercise the kernel and the file system most, without the
# network or minutes of run time (13.9 s together on the development machine).
modules="test_mmap test_fcntl test_os test_posix test_pty test_resource test_tempfile test_select test_epoll test_stat"
recipe=2
key=$(echo "$suite $packages $modules $recipe" | sha256sum | cut -c1-16)
out=$cache/debian-$suite-$key
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it), or set HULL_DEBIAN_IMAGE to a directory made by it"
command -v debootstrap >/dev/null || die "debootstrap not found: install the Debian package debootstrap"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
tree=$out.tmp/root
say "debootstrap $suite with $packages from $mirror"
start=$SECONDS
debootstrap --variant=minbase --include="$packages" "$suite" "$tree" "$mirror" > "$out.tmp/debootstrap.log" 2>&1 \
    || { tail -n 20 "$out.tmp/debootstrap.log" >&2; die "debootstrap failed (log: $out.tmp/debootstrap.log)"; }
say "debootstrap took $((SECONDS - start)) s"
# What a container has: an empty /tmp, no package caches or documentation.
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/* "$tree"/usr/share/doc/* \
    "$tree"/usr/share/man/* "$tree"/usr/share/locale/*
tar -C "$tree" --numeric-owner -cf "$out.tmp/image.tar" .
echo "$modules" > "$out.tmp/modules.txt"

say "reference run in a chroot: $modules"
# shellcheck disable=SC2086
unshare --mount --pid --fork sh -c '
    set -e
    mount --make-rprivate /
    mount -t proc proc "$1/proc"
    mount -t tmpfs -o mode=1777 tmpfs "$1/tmp"
    mkdir -p "$1/dev/shm"
    mount -t tmpfs -o mode=1777 tmpfs "$1/dev/shm"
    shift
    chroot "$0" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root /usr/bin/python3 -m test -v "$@"
' "$tree" "$tree" $modules > "$out.tmp/reference.txt" 2>&1 || true
grep -q "^== Tests result" "$out.tmp/reference.txt" \
    || { tail -n 20 "$out.tmp/reference.txt" >&2; die "the reference run did not finish"; }
rm -rf "$tree"
touch "$out.tmp/.complete"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
