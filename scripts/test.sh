#!/usr/bin/env bash
# Run hull's whole test suite: fmt and clippy, host tests, then the VM suites (in the KVM lab where the
# host's /dev/kvm cannot boot Linux).
#
#   scripts/test.sh [NEXTEST ARGS...]
#
# A test that needs a VM and could not boot one prints SKIPPED and appends a line to
# $HULL_SKIP_LOG; the skips are counted and listed at the end, and with CI=true any skip
# fails the run.  HULL_SKIP_VM_SUITES=1 leaves the VM suites out (counted as a skip).
set -euo pipefail
cd "$(dirname "$0")/.."

skip_log=$(mktemp)
trap 'rm -f "$skip_log"' EXIT
export HULL_SKIP_LOG=$skip_log
status=0

# The checks that keep the code so: formatting, and clippy with every warning an error
# (the workspace's lints include clippy::undocumented_unsafe_blocks).
start=$SECONDS
cargo fmt --all -- --check || { echo "test: cargo fmt --check failed (run cargo fmt --all)"; status=1; }
cargo clippy --workspace --all-targets --locked -- -D warnings || { echo "test: clippy failed"; status=1; }
echo "test: fmt and clippy took $((SECONDS - start)) s"

start=$SECONDS
cargo nextest run --workspace --no-fail-fast "$@" || status=1
echo "test: host tests took $((SECONDS - start)) s"

start=$SECONDS
if [ "${HULL_SKIP_VM_SUITES:-}" = 1 ]; then
    echo "SKIPPED VM suites (HULL_SKIP_VM_SUITES=1)"
    echo "VM suites: HULL_SKIP_VM_SUITES=1" >> "$skip_log"
else
    tests/lab/suite.sh || status=1
    echo "test: VM suites took $((SECONDS - start)) s"
fi

skips=$(grep -c . "$skip_log" || true)
if [ "$skips" -gt 0 ]; then
    echo "test: $skips VM test(s) skipped, no VM booted for them:"
    sed 's/^/  SKIPPED /' "$skip_log"
    if [ "${CI:-}" = true ]; then
        echo "test: error: skipped VM tests fail the run in CI (CI=true)"
        status=1
    fi
fi
[ "$status" -eq 0 ] && echo "test: all passed" || echo "test: FAILED"
exit "$status"
