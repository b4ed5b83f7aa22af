#!/usr/bin/env bash
# Builds the inputs of the VMM boot test on the host (guest kernel, guest probe, test
# binary with the vmm binary, release builds: debug code is very slow under the lab's
# emulation) and runs the test where /dev/kvm boots Linux: in the KVM
# lab on a PVM host, directly on hardware KVM (tests/lab/run.sh decides).
#
#   vmm/tests/lab/boot.sh [--mode auto|lab|direct]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$repo"

kernel=${HULL_GUEST_KERNEL:-$(kernel-config/build.sh)}
CARGO_TARGET_DIR=$repo/target/guest-probe cargo build --quiet --release \
    --target x86_64-unknown-linux-musl --manifest-path vmm/tests/guest-probe/Cargo.toml
probe=$repo/target/guest-probe/x86_64-unknown-linux-musl/release/hull-guest-probe
exe=$(cargo test --release --no-run --message-format=json -p vmm --test guest_boot \
    | grep '"kind":\["test"\]' | grep '"name":"guest_boot"' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -n "$exe" ] || { echo "boot.sh: no test executable" >&2; exit 1; }

art=$repo/.lab/vmm-boot
mkdir -p "$art"
cp "$kernel" "$art/vmlinux"
cp "$probe" "$art/guest-probe"
chmod -R a+rX "$repo/.lab"
export HULL_GUEST_KERNEL=$art/vmlinux HULL_GUEST_PROBE=$art/guest-probe
exec tests/lab/run.sh "$@" -- "$exe" --include-ignored --test-threads=1 --nocapture
