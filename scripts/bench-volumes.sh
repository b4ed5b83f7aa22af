#!/usr/bin/env bash
# Volume benchmark (issue: volumes): in one container with a bind-mounted host folder
# (`-v DIR:/vol`, virtio-fs through virtiofsd), the same operations on the volume and
# on the container's own writable layer (ext4 on virtio-blk under overlayfs):
#   - writing a 100 MB file (dd, fsync at the end),
#   - reading it back after dropping the guest's page cache,
#   - creating 1000 small files.
# Each step is one `hull exec`; the median of `exec true` is printed so its cost can be
# taken off. In the lab here, directly on hardware KVM.
#
#   scripts/bench-volumes.sh [--mode auto|lab|direct]   env: HULL_BENCH_RUNS=3
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. scripts/bench-lib.sh
art=$repo/.lab/volumes-bench
bench_artifacts "$art"
chmod -R a+rX "$repo/.lab"
export HULL_BENCH_RUNS=${HULL_BENCH_RUNS:-3}
exec tests/lab/run.sh --timeout 2400 "$@" -- scripts/bench-volumes-inner.sh "$art"
