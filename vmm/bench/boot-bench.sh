#!/usr/bin/env bash
# Boot benchmark: hull's VMM against QEMU `-M microvm` (and Firecracker when
# FIRECRACKER=/path/to/firecracker is given), same kernel, initramfs, memory and vCPUs,
# RUNS boots each, interleaved, all in one lab run (or directly on hardware KVM).
# Reports, per VMM, the median time from process start to the guest's /init and to VM
# exit, their spread, the VMM's RSS beyond the guest memory it touched, and for hull
# when its vCPUs started (its --timings line).
#
#   vmm/bench/boot-bench.sh [--mode auto|lab|direct]
#   env: RUNS=10 MEM_MIB=256 VCPUS=1 FIRECRACKER=/path HULL_GUEST_KERNEL=/path/vmlinux
#        CMDLINE_EXTRA="..." (appended to the kernel command line of all three)
#
# Timings inside the lab are distorted by emulation: compare the ratios of one run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

kernel=${HULL_GUEST_KERNEL:-$(kernel-config/build.sh)}
# The static build, as hull runs it.
cargo build --quiet --release -p vmm --bin vmm --target x86_64-unknown-linux-musl
art=$repo/.lab/vmm-bench
rm -rf "$art"
mkdir -p "$art/initramfs/bin"
cp "$kernel" "$art/vmlinux"
cp target/x86_64-unknown-linux-musl/release/vmm "$art/vmm"
cp /bin/busybox "$art/initramfs/bin/busybox"
cat > "$art/initramfs/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox echo HULL-BENCH-INIT
/bin/busybox sleep 1
/bin/busybox reboot -f
INIT
chmod 0755 "$art/initramfs/init"
(cd "$art/initramfs" && find . -print0 | cpio --null -o -H newc --quiet) > "$art/initramfs.cpio"
if [ -n "${FIRECRACKER:-}" ]; then cp "$FIRECRACKER" "$art/firecracker"; fi
chmod -R a+rX "$repo/.lab"
exec tests/lab/run.sh "$@" -- vmm/bench/bench-inner.sh "$art" "${RUNS:-10}" "${MEM_MIB:-256}" "${VCPUS:-1}" \
    "${CMDLINE_EXTRA:-}"
