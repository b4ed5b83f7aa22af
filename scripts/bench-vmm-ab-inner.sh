#!/usr/bin/env bash
# Inner half of bench-vmm-ab.sh: runs where /dev/kvm boots Linux.
#   bench-vmm-ab-inner.sh ARTIFACT_DIR      (env: HULL_BENCH_RUNS, HULL_BENCH_MEM_MIB)
set -euo pipefail
art=$1
runs=${HULL_BENCH_RUNS:-5} mem=${HULL_BENCH_MEM_MIB:-256}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HULL_ROOT=$work/store HULL_KERNEL=$art/vmlinux HULL_AGENT=$art/hull-agent HULL_NETWORK=none
export HULL_BOOT_TIMEOUT=${HULL_BOOT_TIMEOUT:-300}
hull=$art/hull
cmdline="console=ttyS0 reboot=k panic=-1 quiet rdinit=/init"

. "$(dirname "$0")/bench-lib.sh"

echo "bench: $(uname -r), $(nproc) CPUs, $runs runs, ${mem} MiB, 1 vCPU"
"$hull" load -i "$art/image.tar" >/dev/null
"$hull" tag "$("$hull" images -q | head -n1)" bench:latest
"$hull" image rootfs bench >/dev/null
echo "warm-up run: $(HULL_VMM=$art/vmm-new timed "$hull" run --rm -m "${mem}m" bench true)"

# One run of each variant per round, so drift in the lab hits both alike.
ab() {
    local name=$1
    shift
    for v in base new; do : > "$work/$name-$v"; done
    for i in $(seq 1 "$runs"); do
        for v in base new; do
            HULL_VMM=$art/vmm-$v timed "$@" >> "$work/$name-$v"
        done
        echo "$name round $i: base $(tail -n1 "$work/$name-base") new $(tail -n1 "$work/$name-new")"
    done
    for v in base new; do
        echo "RESULT ${name}_$v median_s=$(grep -v fail "$work/$name-$v" | median || true)" \
            "failures=$(grep -c fail "$work/$name-$v" || true) ($(tr '\n' ' ' < "$work/$name-$v"))"
    done
}

for v in base new; do
    HULL_VMM=$art/vmm-$v "$hull" run -d --name "idle-$v" -m "${mem}m" bench sleep 1000000 >/dev/null
done
ab exec_true sh -c '"$0" exec "idle-${HULL_VMM##*-}" true' "$hull"
for v in base new; do "$hull" rm -f "idle-$v" >/dev/null; done
ab run_rm_true "$hull" run --rm -m "${mem}m" bench true
ab bare_boot_exit sh -c '"$HULL_VMM" --kernel "$0" --initramfs "$1" --memory "$2" --console none --cmdline "$3"' \
    "$art/vmlinux" "$art/initramfs.cpio" "$mem" "$cmdline"
