#!/usr/bin/env bash
# Density benchmark: starts N idle containers of the busybox image (N = 1 and 10 by
# default; HULL_DENSITY_COUNTS="1 10 50") and reports the host memory each costs: the
# RSS and PSS of every process hull runs for it (monitor, VMM, passt), per container,
# and of the VMM alone. Then one container allocates and frees 200 MB, and the VMM's
# RSS is read before, while the memory is held, and 5 s after it is freed (virtio-
# balloon free page reporting hands it back). In the same run, QEMU -M microvm boots
# the same kernel with the same memory size to an idle shell, for comparison.
# Runs in the lab here, directly on hardware KVM.
#
#   scripts/bench-density.sh [--mode auto|lab|direct]
#
# Inside the lab absolute times are distorted by emulation; memory figures are not.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

. scripts/bench-lib.sh
art=$repo/.lab/density-bench
bench_artifacts "$art"
mkdir -p "$art/idle-initramfs/bin"
cp /bin/busybox "$art/idle-initramfs/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc 2>/dev/null\necho HULL-IDLE\nexec /bin/busybox sleep 1000000\n' \
    > "$art/idle-initramfs/init"
chmod 0755 "$art/idle-initramfs/init"
(cd "$art/idle-initramfs" && find . -print0 | cpio --null -o -H newc --quiet) > "$art/idle-initramfs.cpio"
chmod -R a+rX "$repo/.lab"
export HULL_DENSITY_COUNTS=${HULL_DENSITY_COUNTS:-1 10}
exec tests/lab/run.sh --timeout 2700 "$@" -- scripts/bench-density-inner.sh "$art"
