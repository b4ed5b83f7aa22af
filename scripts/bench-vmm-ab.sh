#!/usr/bin/env bash
# A/B benchmark of two VMM builds on the same kernel, agent, image and lab: the VMM of
# git revision BASE against the working tree's, interleaved run by run, for
#   - `hull exec CONTAINER true` round trips (one idle container per VMM, in turn),
#   - `hull run --rm IMAGE true` end to end,
#   - the VMM's bare boot-to-exit of the kernel with a trivial initramfs.
# Used to price a VMM change (e.g. stricter seccomp filters). Runs in the lab here,
# directly on hardware KVM.
#
#   scripts/bench-vmm-ab.sh BASE [--mode auto|lab|direct]   env: HULL_BENCH_RUNS=5 HULL_BENCH_MEM_MIB=256
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
base=${1:?usage: scripts/bench-vmm-ab.sh BASE [--mode auto|lab|direct]}
shift

. scripts/bench-lib.sh
art=$repo/.lab/vmm-ab
bench_artifacts "$art"
bench_trivial_initramfs "$art"
mv "$art/vmm" "$art/vmm-new"
# BASE's VMM, built from a detached worktree into a target directory of its own.
tree=$(mktemp -d)
trap 'git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"' EXIT
git worktree add --quiet --detach "$tree" "$base"
CARGO_TARGET_DIR=$repo/target/vmm-ab-base cargo build --quiet --release -p vmm \
    --target x86_64-unknown-linux-musl --manifest-path "$tree/Cargo.toml"
cp "$repo/target/vmm-ab-base/x86_64-unknown-linux-musl/release/vmm" "$art/vmm-base"
echo "bench: base $(git rev-parse --short "$base"), new $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- vmm || echo '+changes')"
chmod -R a+rX "$repo/.lab"
export HULL_BENCH_RUNS=${HULL_BENCH_RUNS:-5} HULL_BENCH_MEM_MIB=${HULL_BENCH_MEM_MIB:-256}
exec tests/lab/run.sh --timeout 2400 "$@" -- scripts/bench-vmm-ab-inner.sh "$art"
