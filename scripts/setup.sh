#!/usr/bin/env bash
# Set up a fresh Debian 12 / Ubuntu machine for hull and run hull's main job: build
# everything, then pull an image from a local registry and run a container from it.
#   ./scripts/setup.sh            install, build, run the demo
#   ./scripts/setup.sh --no-demo  install and build only (used by .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

packages=$(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$' | tr '\n' ' ')
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) and rerun" >&2
    exit 1
fi
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# hull, its VMM, the static guest agent, and the guest kernel (cached after the first
# build, which takes a while).
cargo build --release -p hull -p vmm
cargo build --release -p guest-agent --target x86_64-unknown-linux-musl
kernel-config/build.sh >/dev/null

if [ "${1:-}" = "--no-demo" ]; then exit 0; fi
exec ./scripts/demo.sh
