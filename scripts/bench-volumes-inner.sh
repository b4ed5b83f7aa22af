#!/usr/bin/env bash
# Inner half of bench-volumes.sh: runs where /dev/kvm boots Linux.
#   bench-volumes-inner.sh ARTIFACT_DIR      (env: HULL_BENCH_RUNS)
set -euo pipefail
art=$1
runs=${HULL_BENCH_RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HULL_ROOT=$work/store HULL_KERNEL=$art/vmlinux HULL_VMM=$art/vmm HULL_AGENT=$art/hull-agent
export HULL_BOOT_TIMEOUT=${HULL_BOOT_TIMEOUT:-300} HULL_NETWORK=none
hull=$art/hull
export BENCH_TIMEOUT=600

. "$(dirname "$0")/bench-lib.sh"

echo "bench: $(uname -r), $(nproc) CPUs, $runs runs"
"$hull" load -i "$art/image.tar" >/dev/null
"$hull" tag "$("$hull" images -q | head -n1)" bench:latest
mkdir -p "$work/vol"
"$hull" run -d --name vols -v "$work/vol:/vol" bench sleep 1000000 >/dev/null
"$hull" exec vols mkdir -p /layer

mb=
series exec_true "$hull" exec vols true
for where in vol layer; do
    mb=100
    series "write_100mb_$where" "$hull" exec vols sh -c "dd if=/dev/zero of=/$where/big bs=1M count=100 conv=fsync 2>/dev/null"
    series "read_100mb_$where" "$hull" exec vols sh -c \
        "sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; dd if=/$where/big of=/dev/null bs=1M 2>/dev/null"
    mb=
    series "create_1000_files_$where" "$hull" exec vols sh -c \
        "rm -rf /$where/small; mkdir /$where/small; i=0; while [ \$i -lt 1000 ]; do echo x > /$where/small/\$i; i=\$((i+1)); done; sync"
done
[ "$(stat -c %s "$work/vol/big")" = $((100 << 20)) ] || { echo "bench: the volume's file did not reach the host" >&2; exit 1; }
"$hull" rm -f vols >/dev/null
