#!/usr/bin/env bash
# The container end-to-end suite (tests/container_e2e.rs): the real `hull` CLI booting
# real micro-VMs as an unprivileged user, in the lab here, directly on hardware KVM.
# tests/lab/suite.sh runs it with the other VM suites; this script runs it alone.
#
#   tests/lab/containers.sh [--mode auto|lab|direct] [-- TEST_FILTER...]
#   env: HULL_E2E_DIR=DIR keeps the test store (every container's logs) under DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
mode=()
case "${1:-}" in --mode) mode=("$1" "$2"); shift 2 ;; esac
[ "${1:-}" = "--" ] && shift

art=$repo/.lab/containers
mkdir -p "$art"
cp "$(kernel-config/build.sh)" "$art/vmlinux"
cargo build --quiet --release -p vmm -p guest-agent --target x86_64-unknown-linux-musl
exe=$(cargo test --no-run --message-format=json -p hull --test container_e2e \
    | grep '"kind":\["test"\]' | grep '"name":"container_e2e"' \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -n "$exe" ] || { echo "containers: cargo printed no test executable" >&2; exit 1; }
chmod -R a+rX "$repo/.lab"
export HULL_KERNEL=$art/vmlinux HULL_VMM=$repo/target/x86_64-unknown-linux-musl/release/vmm \
    HULL_AGENT=$repo/target/x86_64-unknown-linux-musl/release/hull-agent HULL_BOOT_TIMEOUT=300
exec "$here/run.sh" --timeout 1500 "${mode[@]}" -- "$exe" --include-ignored --test-threads=1 "$@"
