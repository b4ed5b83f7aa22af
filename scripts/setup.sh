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
# scripts/test.sh checks formatting and runs clippy.
rustup component add rustfmt clippy >/dev/null 2>&1 || true
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

# virtiofsd serves the volumes of running containers; Debian 12 does not package it.
# Built once (as this user) and installed into /usr/local, where every user, the
# tests' unprivileged one included, finds it. One with the options hull passes is
# kept.
virtiofsd=/usr/local/bin/virtiofsd
if ! "$virtiofsd" --help 2>/dev/null | grep -- '--translate-uid' >/dev/null; then
    echo "setup: building virtiofsd into /usr/local"
    build_root=$(mktemp -d)
    cargo install --locked --quiet --root "$build_root" virtiofsd
    $SUDO install -m 0755 "$build_root/bin/virtiofsd" "$virtiofsd"
    rm -rf "$build_root"
fi

# hull, its VMM and the guest agent (both static: the VMM starts faster without dynamic
# loading), and the guest kernel (cached after the first build, which takes a while).
cargo build --release -p hull
cargo build --release -p vmm -p guest-agent --target x86_64-unknown-linux-musl
kernel-config/build.sh >/dev/null

if [ "${1:-}" = "--no-demo" ]; then exit 0; fi
exec ./scripts/demo.sh
