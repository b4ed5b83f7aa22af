#!/usr/bin/env bash
# Container benchmark (issue: hull run): with the base disk already built, measures
#   - `hull run --rm IMAGE true` end to end,
#   - `hull exec CONTAINER true` round trip,
#   - `hull run -d IMAGE sleep` until it returns (the container runs), and the same
#     with an older hull binary given as HULL_BENCH_BASELINE, for comparison,
#   - host memory of an idle container (VMM RSS beyond the guest pages it touched,
#     the guest pages, and the monitor's RSS),
# and, in the same run, the bare boot-to-exit of the same kernel with a trivial
# initramfs (/init reboots at once) under QEMU `-M microvm` and under hull's own VMM
# (and Firecracker when FIRECRACKER=/path/to/firecracker is given), which isolates
# hull's own overhead. Runs in the lab here, directly on hardware KVM.
#
#   scripts/bench-run.sh [--mode auto|lab|direct]   env: HULL_BENCH_RUNS=10 HULL_BENCH_MEM_MIB=256
#                                                  HULL_BENCH_BASELINE=/path/to/older/hull
#
# Inside the lab absolute times are distorted by emulation: compare the ratios.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

. scripts/bench-lib.sh
art=$repo/.lab/run-bench
bench_artifacts "$art"
bench_trivial_initramfs "$art"
if [ -n "${FIRECRACKER:-}" ]; then cp "$FIRECRACKER" "$art/firecracker"; fi
if [ -n "${HULL_BENCH_BASELINE:-}" ]; then cp "$HULL_BENCH_BASELINE" "$art/hull-baseline"; fi
chmod -R a+rX "$repo/.lab"
export HULL_BENCH_RUNS=${HULL_BENCH_RUNS:-10} HULL_BENCH_MEM_MIB=${HULL_BENCH_MEM_MIB:-256}
exec tests/lab/run.sh --timeout 2400 "$@" -- scripts/bench-run-inner.sh "$art"
