#!/usr/bin/env bash
# Boot hull's guest kernel under QEMU's microvm with KVM and check what the guest
# reports: the baseline hull's own VMM is compared against.  Runs where /dev/kvm boots
# Linux (inside the lab, or directly on a hardware-KVM host), as an unprivileged user.
#
#   tests/lab/boot-test.sh VMLINUX INITRAMFS EROFS_IMAGE EXPECTED_PROBE_TEXT
#
# The guest (guest-init.sh) mounts the EROFS image from a read-only virtio-blk disk under
# a tmpfs-backed overlayfs, checks its file systems, cgroup2, namespaces, virtio-net and
# virtio-rng, prints HULL-GUEST-* markers and reboots; QEMU (-no-reboot) must then exit
# by itself (the emulated i8042 turns the guest's reset into an exit, as hull's VMM
# does).  HULL_BOOT_VERBOSE=1 shows the kernel's boot log.  Without /dev/kvm the test prints SKIPPED, appends to $HULL_SKIP_LOG, and
# fails when CI=true.  Set HULL_BOOT_RUNS=N to boot N times (timings of each are printed),
# HULL_BOOT_APPEND to add to the kernel command line, HULL_BOOT_LOG=FILE to keep the
# last boot's console (host time, line).
set -euo pipefail

name=guest_kernel_boots_under_qemu_microvm_with_kvm
[ $# -eq 4 ] || { echo "usage: $0 VMLINUX INITRAMFS EROFS_IMAGE EXPECTED_PROBE_TEXT" >&2; exit 2; }
vmlinux=$1 initramfs=$2 disk=$3 expected=$4
runs=${HULL_BOOT_RUNS:-1}
# The console is slow in a nested guest: keep the kernel quiet unless asked.
quiet=" quiet"
[ "${HULL_BOOT_VERBOSE:-}" = 1 ] && quiet=""

fail() { echo "FAILED $name: $*"; exit 1; }
skip() {
    echo "SKIPPED $name: $*"
    if [ -n "${HULL_SKIP_LOG:-}" ]; then echo "$name: $*" >> "$HULL_SKIP_LOG"; fi
    if [ "${CI:-}" = true ]; then fail "skipped in CI (CI=true): $*"; fi
    exit 0
}

[ -e /dev/kvm ] || skip "/dev/kvm does not exist"
[ -r /dev/kvm ] && [ -w /dev/kvm ] || fail "/dev/kvm exists but is not read-write for uid $(id -u)"
command -v qemu-system-x86_64 >/dev/null 2>&1 \
    || fail "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
for f in "$vmlinux" "$initramfs" "$disk"; do [ -r "$f" ] || fail "cannot read $f"; done

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT

boot_once() {
    local start qemu_rc
    start=$EPOCHREALTIME
    set +e
    timeout --kill-after=5 120 qemu-system-x86_64 \
        -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m 256 \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot -device i8042 \
        -kernel "$vmlinux" -initrd "$initramfs" \
        -append "console=ttyS0 reboot=k panic=-1 no_timer_check rdinit=/init$quiet${HULL_BOOT_APPEND:+ $HULL_BOOT_APPEND}" \
        -drive id=base,file="$disk",format=raw,if=none,readonly=on \
        -device virtio-blk-device,drive=base \
        -netdev user,id=net0 -device virtio-net-device,netdev=net0 \
        -device virtio-rng-device \
        < /dev/null 2>&1 | while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "${line%$'\r'}"; done > "$log"
    qemu_rc=${PIPESTATUS[0]}
    set -e
    local end=$EPOCHREALTIME

    local problems=()
    [ "$qemu_rc" -ne 124 ] && [ "$qemu_rc" -ne 137 ] || problems+=("QEMU did not exit within 120 s (no clean reboot path?)")
    [ "$qemu_rc" -eq 0 ] || [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ] || problems+=("QEMU exited with status $qemu_rc")
    local m
    for m in HULL-GUEST-UP "HULL-GUEST-EROFS $expected" "HULL-GUEST-OVERLAY-WRITE ok" \
        HULL-GUEST-NET HULL-GUEST-RNG HULL-GUEST-DONE; do
        grep -qF " $m" "$log" || problems+=("missing marker: $m")
    done
    while IFS= read -r m; do problems+=("guest reported: ${m#* }"); done < <(grep -F ' HULL-GUEST-FAIL' "$log" || true)
    if [ ${#problems[@]} -gt 0 ]; then
        echo "--- guest console (host time, line) ---"
        cat "$log"
        echo "---"
        printf '  %s\n' "${problems[@]}"
        fail "${#problems[@]} problem(s)"
    fi
    local up_line t_up guest_up
    up_line=$(grep -F ' HULL-GUEST-UP' "$log" | head -n1)
    t_up=${up_line%% *}
    guest_up=$(echo "$up_line" | sed -n 's/.*uptime=\([0-9.]*\).*/\1/p')
    echo "boot $1: /init reached $(elapsed "$start" "$t_up") s after QEMU start" \
        "(guest uptime $guest_up s); QEMU exited after the guest's reboot at $(elapsed "$start" "$end") s"
}

for i in $(seq 1 "$runs"); do boot_once "$i"; done
if [ -n "${HULL_BOOT_LOG:-}" ]; then cp "$log" "$HULL_BOOT_LOG"; fi
echo "PASSED $name ($(grep -F ' HULL-GUEST-UP' "$log" | head -n1 | sed 's/.*kernel=//'))"
