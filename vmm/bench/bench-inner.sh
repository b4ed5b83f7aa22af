#!/usr/bin/env bash
# Inner half of boot-bench.sh: runs where /dev/kvm boots Linux.
#   bench-inner.sh ARTIFACT_DIR [RUNS [MEM_MIB [VCPUS [EXTRA_CMDLINE]]]]
set -uo pipefail
art=$1
runs=${2:-10} mem=${3:-256} vcpus=${4:-1}
# `quiet`, as hull runs its guests: otherwise every VMM spends most of the boot emulating
# the serial port for the kernel log (two exits per character).
cmdline="console=ttyS0 reboot=k panic=-1 quiet rdinit=/init${5:+ $5}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# RSS of the process minus the RSS of its guest-memory mapping (the one mapping of
# exactly MEM_MIB), in KiB.
overhead_kib() {
    awk -v want=$((mem * 1024)) '
        /^[0-9a-f]+-[0-9a-f]+ / { cur = 0 }
        /^Size:/ { cur = ($2 == want) }
        /^Rss:/ { total += $2; if (cur) guest += $2 }
        END { print total - guest }' "/proc/$1/smaps" 2>/dev/null
}

hull_cmd() { echo "$art/vmm --kernel $art/vmlinux --initramfs $art/initramfs.cpio --memory $mem --vcpus $vcpus --console stdout --cmdline '$cmdline'"; }
qemu_cmd() {
    echo "qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp $vcpus -m $mem -nodefaults -no-user-config" \
         "-display none -serial stdio -no-reboot -device i8042 -kernel $art/vmlinux -initrd $art/initramfs.cpio -append '$cmdline'"
}
fc_cmd() {
    cat > "$work/fc.json" <<JSON
{ "boot-source": { "kernel_image_path": "$art/vmlinux", "initrd_path": "$art/initramfs.cpio", "boot_args": "$cmdline" },
  "drives": [], "machine-config": { "vcpu_count": $vcpus, "mem_size_mib": $mem } }
JSON
    echo "$art/firecracker --no-api --config-file $work/fc.json"
}

# The deepest descendant of $1 (the VMM under `timeout` and the eval subshell).
leaf_process() {
    local p=$1 c
    while c=$(pgrep -P "$p" | head -n1) && [ -n "$c" ]; do p=$c; done
    [ "$p" != "$1" ] && echo "$p"
}

# One boot: prints "<init_s> <exit_s> <overhead_kib>" (times from process start).
boot_once() {
    local cmd=$1 log=$work/console fifo=$work/fifo start tpid vpid="" t_init="" rss="" reader
    : > "$log"
    rm -f "$fifo"
    mkfifo "$fifo"
    (while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done < "$fifo" > "$log") &
    reader=$!
    start=$EPOCHREALTIME
    eval "timeout 120 $cmd" < /dev/null > "$fifo" 2>&1 &
    tpid=$!
    while kill -0 "$tpid" 2>/dev/null; do
        [ -n "$vpid" ] || vpid=$(leaf_process "$tpid")
        if [ -z "$t_init" ] && grep -q HULL-BENCH-INIT "$log"; then
            t_init=$(grep -m1 HULL-BENCH-INIT "$log" | cut -d' ' -f1)
            [ -n "$vpid" ] && rss=$(overhead_kib "$vpid")
        fi
        sleep 0.002
    done
    wait "$tpid"
    local end=$EPOCHREALTIME
    wait "$reader"
    [ -n "$t_init" ] || t_init=$(grep -m1 HULL-BENCH-INIT "$log" | cut -d' ' -f1)
    [ -n "$t_init" ] || { echo "fail fail fail"; sed 's/^/    | /' "$log" | tail -n 20 >&2; return; }
    echo "$(elapsed "$start" "$t_init") $(elapsed "$start" "$end") ${rss:-n/a}"
}

bench() {
    local name=$1 cmd=$2 i
    : > "$work/$name"
    for i in $(seq 1 "$runs"); do
        r=$(boot_once "$cmd")
        echo "$name run $i: init_s exit_s rss_overhead_kib = $r"
        echo "$r" >> "$work/$name"
    done
    echo "RESULT $name median_init_s=$(cut -d' ' -f1 "$work/$name" | grep -v fail | median)" \
        "median_exit_s=$(cut -d' ' -f2 "$work/$name" | grep -v fail | median)" \
        "median_rss_overhead_kib=$(cut -d' ' -f3 "$work/$name" | grep -v 'fail\|n/a' | median)" \
        "failures=$(grep -c fail "$work/$name")"
}

echo "bench: $(uname -r), $(nproc) CPUs, $runs runs, ${mem} MiB, $vcpus vCPU(s)"
bench hull "$(hull_cmd)"
if command -v qemu-system-x86_64 >/dev/null; then bench qemu "$(qemu_cmd)"; else echo "qemu-system-x86_64 not installed: QEMU not measured"; fi
if [ -x "$art/firecracker" ]; then bench firecracker "$(fc_cmd)"; fi
