#!/usr/bin/env bash
# Inner half of bench-run.sh: runs where /dev/kvm boots Linux.
#   bench-run-inner.sh ARTIFACT_DIR      (env: HULL_BENCH_RUNS, HULL_BENCH_MEM_MIB)
set -euo pipefail
art=$1
runs=${HULL_BENCH_RUNS:-10} mem=${HULL_BENCH_MEM_MIB:-256}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HULL_ROOT=$work/store HULL_KERNEL=$art/vmlinux HULL_VMM=$art/vmm HULL_AGENT=$art/hull-agent
export HULL_BOOT_TIMEOUT=${HULL_BOOT_TIMEOUT:-300}
hull=$art/hull
cmdline="console=ttyS0 reboot=k panic=-1 quiet rdinit=/init"

. "$(dirname "$0")/bench-lib.sh"

echo "bench: $(uname -r), $(nproc) CPUs, $runs runs, ${mem} MiB, 1 vCPU"
"$hull" load -i "$art/image.tar" >/dev/null
"$hull" tag "$("$hull" images -q | head -n1)" bench:latest
"$hull" image rootfs bench >/dev/null
echo "warm-up run: $(timed "$hull" run --rm -m "${mem}m" bench true)"   # the initramfs cache, the page cache

# Cheapest first: a stalled lab VM (see tests/lab/README.md) then costs the least.
"$hull" run -d --name idle -m "${mem}m" bench sleep 1000000 >/dev/null
series exec_true "$hull" exec idle true
sleep 2
vmm_pid=$("$hull" inspect idle | awk -F': ' '/"Pid"/ { gsub(/[ ,]/, "", $2); print $2; exit }')
monitor_pid=$(pgrep -f "container-monitor $("$hull" inspect idle | awk -F'"' '/"Id"/ { print $4; exit }')" | head -n1)
awk -v want=$((mem * 1024)) '
    /^[0-9a-f]+-[0-9a-f]+ / { cur = 0 }
    /^Size:/ { cur = ($2 == want) }
    /^Rss:/ { total += $2; if (cur) guest += $2 }
    END { printf "RESULT idle_vmm_rss_kib=%d guest_touched_kib=%d vmm_overhead_kib=%d\n", total, guest, total - guest }' \
    "/proc/$vmm_pid/smaps"
echo "RESULT idle_monitor_rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$monitor_pid/status")"
"$hull" rm -f idle >/dev/null
# `run -d` returns once the container runs; an older hull given as $art/hull-baseline
# (HULL_BENCH_BASELINE to bench-run.sh) is timed on the same image in the same run,
# alternating with this one, each container removed before the next is started.
: > "$work/run_detached" && : > "$work/run_detached_baseline"
for i in $(seq 1 "$runs"); do
    for name in run_detached run_detached_baseline; do
        bin=$hull
        if [ "$name" = run_detached_baseline ]; then
            [ -x "$art/hull-baseline" ] || continue
            bin=$art/hull-baseline
        fi
        timed "$bin" run -d --name detached -m "${mem}m" bench sleep 1000000 >> "$work/$name"
        echo "$name run $i: $(tail -n1 "$work/$name")"
        "$hull" rm -f detached >/dev/null 2>&1 || true
    done
done
for name in run_detached run_detached_baseline; do
    [ -s "$work/$name" ] || continue
    echo "RESULT $name median_s=$(grep -v fail "$work/$name" | median || true) runs=$runs" \
        "failures=$(grep -c fail "$work/$name" || true) ($(tr '\n' ' ' < "$work/$name"))"
done
series run_rm_true "$hull" run --rm -m "${mem}m" bench true
series vmm_bare_boot_exit "$art/vmm" --kernel "$art/vmlinux" --initramfs "$art/initramfs.cpio" --memory "$mem" \
    --console none --cmdline "$cmdline"
if command -v qemu-system-x86_64 >/dev/null; then
    series qemu_bare_boot_exit timeout 150 qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m "$mem" \
        -nodefaults -no-user-config -display none -serial null -no-reboot -device i8042 \
        -kernel "$art/vmlinux" -initrd "$art/initramfs.cpio" -append "$cmdline"
fi
if [ -x "$art/firecracker" ]; then
    cat > "$work/fc.json" <<JSON
{ "boot-source": { "kernel_image_path": "$art/vmlinux", "initrd_path": "$art/initramfs.cpio", "boot_args": "$cmdline" },
  "drives": [], "machine-config": { "vcpu_count": 1, "mem_size_mib": $mem } }
JSON
    series firecracker_bare_boot_exit "$art/firecracker" --no-api --config-file "$work/fc.json"
fi

