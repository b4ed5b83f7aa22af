#!/usr/bin/env bash
# The VM test suites: build (or reuse) hull's guest kernel and the KVM test binaries on
# the host, then run them through tests/lab/run.sh: inside the L1 lab when this host's
# KVM cannot boot Linux, directly otherwise.  A self-test of the lab's plumbing (exit
# status, user, /dev/kvm, skip log) runs first.  Exit status: 0 only when every suite
# passed.
#
#   tests/lab/suite.sh [--mode auto|lab|direct]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

say() { echo "lab-suite: $*" >&2; }
die() { echo "lab-suite: error: $*" >&2; exit 1; }
stage() { say "$1: $(( SECONDS - stage_start )) s"; stage_start=$SECONDS; }
stage_start=$SECONDS

command -v mkfs.erofs >/dev/null 2>&1 || die "mkfs.erofs not found: install the Debian package erofs-utils"
command -v cpio >/dev/null 2>&1 || die "cpio not found: install the Debian package cpio"
[ -x /bin/busybox ] || die "/bin/busybox not found: install the Debian package busybox-static"

vmlinux=$(kernel-config/build.sh)
stage "guest kernel"

art=$repo/.lab/artifacts
rm -rf "$art"
mkdir -p "$art"
cp "$vmlinux" "$art/vmlinux"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/initramfs/bin" "$work/probe"
cp /bin/busybox "$work/initramfs/bin/busybox"
cp "$here/guest-init.sh" "$work/initramfs/init"
chmod 0755 "$work/initramfs/init"
(cd "$work/initramfs" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$art/guest-initramfs.cpio.gz"
echo "hull-erofs-probe-$(date +%s)-$$" > "$art/probe.txt"
cp "$art/probe.txt" "$work/probe/probe.txt"
mkfs.erofs --quiet "$art/probe.erofs" "$work/probe" >/dev/null || die "mkfs.erofs failed"
chmod -R a+rX "$repo/.lab"
stage "guest initramfs and EROFS probe image"


# What the container suite boots: the release VMM (debug code crawls under the lab's
# TCG) and the static guest agent; its tests find them through these variables.
cargo build --quiet --release -p vmm -p guest-agent --target x86_64-unknown-linux-musl \
    || die "cannot build the vmm and the guest agent (rustup target add x86_64-unknown-linux-musl)"
export HULL_KERNEL=$art/vmlinux HULL_VMM=$repo/target/x86_64-unknown-linux-musl/release/vmm \
    HULL_AGENT=$repo/target/x86_64-unknown-linux-musl/release/hull-agent HULL_BOOT_TIMEOUT=300
HULL_HOSTILE_AGENT=$("$here/hostile-agent.sh") || die "cannot build the hostile test agent"
export HULL_HOSTILE_AGENT
stage "vmm and guest agents"

bins=()
while read -r pkg target; do
    case "$pkg" in ''|'#'*) continue ;; esac
    out=$(cargo test --no-run --message-format=json -p "$pkg" --test "$target") \
        || die "cannot build test $target of $pkg"
    # The test target's own artifact: the package's binaries are built beside it.
    exe=$(echo "$out" | grep '"kind":\["test"\]' | grep "\"name\":\"$target\"" \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
    [ -n "$exe" ] || die "cargo printed no executable for test $target of $pkg"
    bins+=("$exe")
done < "$here/suites.txt"
# The VMM's own boot test (its guest probe reads the disks, moves 1 MiB each way over
# vsock, reads virtio-rng and reboots), built in release: it runs the vmm binary built
# beside it, and debug code crawls under the lab's emulation.
CARGO_TARGET_DIR=$repo/target/guest-probe cargo build --quiet --release \
    --target x86_64-unknown-linux-musl --manifest-path vmm/tests/guest-probe/Cargo.toml \
    || die "cannot build the guest probe"
cp "$repo/target/guest-probe/x86_64-unknown-linux-musl/release/hull-guest-probe" "$art/guest-probe"
chmod a+rx "$art/guest-probe"
exe=$(cargo test --release --no-run --message-format=json -p vmm --test guest_boot \
    | grep '"kind":\["test"\]' | grep '"name":"guest_boot"' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -n "$exe" ] || die "cargo printed no executable for the vmm's guest_boot test"
bins+=("$exe")
export HULL_GUEST_KERNEL=$art/vmlinux HULL_GUEST_PROBE=$art/guest-probe
# The distribution suite runs in an L1 of its own (its CPython run takes minutes).
distro_exe=$(cargo test --no-run --message-format=json -p hull --test distro_suites \
    | grep '"kind":\["test"\]' | grep '"name":"distro_suites"' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -n "$distro_exe" ] || die "cargo printed no executable for the distro_suites test"
stage "test binaries (${#bins[@]} + distro_suites)"
# HULL_DEBIAN_IMAGE: a directory debian-image.sh made earlier (it needs root to make one).
debian=${HULL_DEBIAN_IMAGE:-}
[ -n "$debian" ] || debian=$("$here/debian-image.sh") || die "cannot make the Debian test image"
[ -f "$debian/image.tar" ] || die "no image.tar in $debian (HULL_DEBIAN_IMAGE)"
mkdir -p "$art/debian"
for f in image.tar reference.txt modules.txt go-reference.txt go-packages.txt; do
    ln -f "$debian/$f" "$art/debian/$f" 2>/dev/null || cp "$debian/$f" "$art/debian/$f"
done
chmod -R a+rX "$art/debian"
export HULL_DEBIAN_IMAGE=$art/debian
stage "Debian test image (debootstrap, reference run in a chroot)"

rc=0
"$here/selftest.sh" "$@" || rc=1
stage "lab self-test"
# Nested KVM under TCG sometimes wedges L1 (soft lockups while an L2 runs): give the
# suites a bounded L1 and boot a fresh one once if that one ran out of time.
suites_rc=0
"$here/run.sh" --timeout 1200 "$@" -- "$here/in-lab.sh" "$art" "${bins[@]}" || suites_rc=$?
if [ "$suites_rc" -eq 124 ]; then
    say "L1 ran past 1200 s; booting a fresh L1 once more"
    suites_rc=0
    "$here/run.sh" --timeout 1200 "$@" -- "$here/in-lab.sh" "$art" "${bins[@]}" || suites_rc=$?
fi
[ "$suites_rc" -eq 0 ] || rc=1
stage "VM suites in the lab"
echo "=== lab suite: distro_suites (CPython's and Go's tests in Debian, against a chroot)"
"$here/run.sh" --timeout 1500 "$@" -- "$distro_exe" --include-ignored --test-threads=1 || rc=1
stage "distribution suite in the lab"
exit "$rc"
