#!/usr/bin/env bash
# The Debian image of the distribution suite (tests/distro_suites.rs): Debian bookworm
# made with debootstrap, with python3, CPython's own regression tests
# (libpython3.11-testsuite), PostgreSQL, and the test binaries of Go's standard library
# (compiled in the image with Debian's golang-1.19, whose toolchain is then purged but
# for the `go` command, which some tests start as a child process), as a
# plain tar for `hull import`; and the reference runs of both suites in a plain chroot of
# the same tree on this host (its own mount and PID namespaces with /proc, /dev/shm and
# /tmp). Cached: prints the directory holding image.tar, reference.txt (CPython),
# modules.txt, go-reference.txt and go-packages.txt.
#
#   tests/lab/debian-image.sh          (as root: debootstrap and chroot need it)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hull/test-images
say() { echo "debian-image: $*" >&2; }
die() { echo "debian-image: error: $*" >&2; exit 1; }

suite=bookworm
mirror=${HULL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,libpython3.11-testsuite,postgresql,golang-1.19-go,tzdata
# CPython's modules that exercise the kernel and the file system most, without the
# network or minutes of run time (13.9 s together on the development machine).
modules="test_mmap test_fcntl test_os test_posix test_pty test_resource test_tempfile test_select test_epoll test_stat"
# Go's standard library packages that talk to the kernel most: processes, signals,
# threads and timers of the Go runtime, files, polling.
go_packages="os os/exec os/signal os/user syscall internal/poll path/filepath io/fs time sync runtime/debug"
recipe=6
key=$(echo "$suite $packages $modules $go_packages $recipe" | sha256sum | cut -c1-16)
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
# A command in a plain chroot of the tree: its own mount and PID namespaces, with /proc,
# an empty /tmp and /dev/shm, a clean environment, and no descriptors but stdio (as a
# container's process starts; os/exec's TestExtraFiles skips itself otherwise).
close_fds='import os, sys; os.closerange(3, 1 << 16); os.execvp(sys.argv[1], sys.argv[1:])'
in_chroot() {
    unshare --mount --pid --fork sh -c '
        set -e
        mount --make-rprivate /
        mount -t proc proc "$0/proc"
        mount -t tmpfs -o mode=1777 tmpfs "$0/tmp"
        mkdir -p "$0/dev/shm"
        mount -t tmpfs -o mode=1777 tmpfs "$0/dev/shm"
        root=$0 close_fds=$1
        shift
        exec chroot "$root" /usr/bin/env -i PATH=/usr/lib/go-1.19/bin:/usr/bin:/bin HOME=/root \
            /usr/bin/python3 -c "$close_fds" "$@"
    ' "$tree" "$close_fds" "$@"
}

say "Go's test binaries: $go_packages"
start=$SECONDS
mkdir -p "$tree/opt/go-tests/bin" "$tree/opt/go-tests/src"
echo "$go_packages" > "$tree/opt/go-tests/packages.txt"
for p in $go_packages; do
    # Each package's test binary runs from a copy of its source directory (and its
    # testdata), as `go test` runs it.
    mkdir -p "$tree/opt/go-tests/src/$p"
    cp -a "$tree/usr/lib/go-1.19/src/$p/." "$tree/opt/go-tests/src/$p/"
    in_chroot sh -c 'cd /tmp && CGO_ENABLED=0 GOCACHE=/var/tmp/go-cache \
        go test -c -o "/opt/go-tests/bin/$(echo "$0" | tr / _).test" "$0"' "$p" \
        >> "$out.tmp/go-build.log" 2>&1 \
        || { tail -n 20 "$out.tmp/go-build.log" >&2; die "go test -c $p failed (log: $out.tmp/go-build.log)"; }
done
# time's tests load their zones from GOROOT's lib/time/zoneinfo.zip (stored, not
# compressed), which Debian leaves out in favour of tzdata: made from tzdata here.
mkdir -p "$tree/opt/go-tests/lib/time"
in_chroot python3 -c '
import os, zipfile
root = "/usr/share/zoneinfo"
with zipfile.ZipFile("/opt/go-tests/lib/time/zoneinfo.zip", "w", zipfile.ZIP_STORED) as z:
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in ("posix", "right"))
        for f in sorted(files):
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                if fh.read(4) == b"TZif":
                    z.write(path, os.path.relpath(path, root))
' || die "cannot make zoneinfo.zip for Go's time tests"
cat > "$tree/opt/go-tests/run" <<'EOF'
#!/bin/sh
# Go's standard library tests, compiled in this image: each package's test binary, run
# from its source directory as `go test` runs it, verbose and short.
for p in $(cat /opt/go-tests/packages.txt); do
    echo "=== package $p"
    cd "/opt/go-tests/src/$p" || exit 1
    "/opt/go-tests/bin/$(echo "$p" | tr / _).test" -test.v -test.short -test.timeout 10m 2>&1
    echo "=== exit $p $?"
done
EOF
chmod 755 "$tree/opt/go-tests/run"
# The toolchain is 450 MB. Some tests start `go` only to have a child process (os's
# TestErrProcessDone panics without one), so that command stays; tests that build
# with it fail or skip alike in the chroot and in hull.
cp "$tree/usr/lib/go-1.19/bin/go" "$out.tmp/go"
chroot "$tree" dpkg --purge golang-1.19-go golang-1.19-src >> "$out.tmp/go-build.log" 2>&1 \
    || die "cannot purge Go's toolchain (log: $out.tmp/go-build.log)"
mkdir -p "$tree/usr/lib/go-1.19/bin"
mv "$out.tmp/go" "$tree/usr/lib/go-1.19/bin/go"
rm -rf "$tree/var/tmp/go-cache"
say "Go's test binaries took $((SECONDS - start)) s"

# What a container has: an empty /tmp, no package caches or documentation.
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/* "$tree"/usr/share/doc/* \
    "$tree"/usr/share/man/* "$tree"/usr/share/locale/*
tar -C "$tree" --numeric-owner -cf "$out.tmp/image.tar" .
echo "$modules" > "$out.tmp/modules.txt"

say "reference run in a chroot: $modules"
# shellcheck disable=SC2086
in_chroot /usr/bin/python3 -m test -v $modules > "$out.tmp/reference.txt" 2>&1 || true
grep -q "^== Tests result" "$out.tmp/reference.txt" \
    || { tail -n 20 "$out.tmp/reference.txt" >&2; die "the reference run did not finish"; }
say "reference run in a chroot: Go's $go_packages"
echo "$go_packages" > "$out.tmp/go-packages.txt"
in_chroot /opt/go-tests/run > "$out.tmp/go-reference.txt" 2>&1 || true
# shellcheck disable=SC2086
[ "$(grep -c '^=== exit ' "$out.tmp/go-reference.txt")" -eq "$(echo $go_packages | wc -w)" ] \
    || { tail -n 20 "$out.tmp/go-reference.txt" >&2; die "the Go reference run did not finish"; }
rm -rf "$tree"
touch "$out.tmp/.complete"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
