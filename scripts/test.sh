#!/usr/bin/env bash
# Run hull's whole test suite: host tests, then the VM suites (in the KVM lab where the
# host's /dev/kvm cannot boot Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo nextest run --workspace --no-fail-fast "$@"
