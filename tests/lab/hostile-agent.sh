#!/usr/bin/env bash
# Builds the test-only hostile guest agent (guest-agent --features hostile: it attacks
# the host at each step of the protocol, see guest-agent/src/agent/hostile.rs) in its
# own target directory, so it can never be mistaken for the real agent, and prints
# its path. Used by tests/lab/suite.sh and tests/lab/containers.sh for
# tests/hostile_guest.rs (HULL_HOSTILE_AGENT).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
target=$repo/target/hostile-agent
cargo build --quiet --release -p guest-agent --features hostile \
    --target x86_64-unknown-linux-musl --target-dir "$target" --manifest-path "$repo/Cargo.toml"
echo "$target/x86_64-unknown-linux-musl/release/hull-agent"
