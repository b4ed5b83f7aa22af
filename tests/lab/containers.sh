#!/usr/bin/env bash
# The container end-to-end suite (tests/container_e2e.rs): the real `hull` CLI booting
# real micro-VMs as an unprivileged user, in the lab here, directly on hardware KVM.
# tests/lab/suite.sh runs it with the other VM suites; this script runs it alone.
#
#   tests/lab/containers.sh [--mode auto|lab|direct] [--test TARGET] [-- TEST_FILTER...]
#   --test hostile_guest runs the host-against-a-hostile-agent suite instead
#   env: HULL_E2E_DIR=DIR keeps the test store (every container's logs) under DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
mode=()
target=container_e2e
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode=("$1" "$2"); shift 2 ;;
        --test) target=$2; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done

art=$repo/.lab/containers
mkdir -p "$art"
cp "$(kernel-config/build.sh)" "$art/vmlinux"
cargo build --quiet --release -p vmm -p guest-agent --target x86_64-unknown-linux-musl
HULL_HOSTILE_AGENT=$("$here/hostile-agent.sh")
export HULL_HOSTILE_AGENT
exe=$(cargo test --no-run --message-format=json -p hull --test "$target" \
    | grep '"kind":\["test"\]' | grep "\"name\":\"$target\"" \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
[ -n "$exe" ] || { echo "containers: cargo printed no test executable" >&2; exit 1; }
chmod -R a+rX "$repo/.lab"
export HULL_KERNEL=$art/vmlinux HULL_VMM=$repo/target/x86_64-unknown-linux-musl/release/vmm \
    HULL_AGENT=$repo/target/x86_64-unknown-linux-musl/release/hull-agent HULL_BOOT_TIMEOUT=300
exec "$here/run.sh" --timeout 1500 "${mode[@]}" -- "$exe" --include-ignored --test-threads=1 "$@"
