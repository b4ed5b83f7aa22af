#!/usr/bin/env bash
# Container files and network benchmark (issue: cp/diff/commit/network): with the base
# disk built, measures
#   - `hull commit` of a container with a 100 MB writable layer (running: the layer
#     stream alone; stopped: including the helper VM's boot),
#   - `hull cp` of a 100 MB file out of a running container,
#   - TCP throughput through passt: container -> host (nc to the host's loopback via
#     the gateway address; the peer is QEMU's virtio-net on the same passt, same
#     kernel) and host -> container (a published port),
# in the lab here, directly on hardware KVM. Absolute figures in the lab are distorted
# by emulation.
#
#   scripts/bench-files.sh [--mode auto|lab|direct]   env: HULL_BENCH_RUNS=3
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
. scripts/bench-lib.sh
art=$repo/.lab/files-bench
bench_artifacts "$art"
# The QEMU peer's guest: busybox configures eth0 as hull's agent does, sends MB of
# zeros to the host's sink through the gateway, and powers off.
mkdir -p "$art/qnet/bin"
cp /bin/busybox "$art/qnet/bin/busybox"
cat > "$art/qnet/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
ip link set lo up; ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; ip route add default via 10.0.2.2
for arg in $(cat /proc/cmdline); do case "$arg" in sink=*) port=${arg#sink=} ;; mb=*) mb=${arg#mb=} ;; esac; done
dd if=/dev/zero bs=64k count=$((mb * 16)) 2>/dev/null | nc 10.0.2.2 "$port"
reboot -f
INIT
chmod 0755 "$art/qnet/init"
(cd "$art/qnet" && find . -print0 | cpio --null -o -H newc --quiet) > "$art/qnet.cpio"
chmod -R a+rX "$repo/.lab"
export HULL_BENCH_RUNS=${HULL_BENCH_RUNS:-3}
exec tests/lab/run.sh --timeout 2400 "$@" -- scripts/bench-files-inner.sh "$art"
