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
spread() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) print lo "-" hi; else print "n/a" }'; }

# RSS of the process minus the RSS of its guest-memory mapping (the one mapping of
# exactly MEM_MIB), in KiB.
overhead_kib() {
    awk -v want=$((mem * 1024)) '
        /^[0-9a-f]+-[0-9a-f]+ / { cur = 0 }
        /^Size:/ { cur = ($2 == want) }
        /^Rss:/ { total += $2; if (cur) guest += $2 }
        END { print total - guest }' "/proc/$1/smaps" 2>/dev/null
}

# Every VMM gets the same devices: a console and a virtio-rng (hull's VMM always has one;
# a container's guest needs entropy at boot).
hull_cmd() { echo "$art/vmm --kernel $art/vmlinux --initramfs $art/initramfs.cpio --memory $mem --vcpus $vcpus --console stdout --timings --cmdline '$cmdline'"; }
qemu_cmd() {
    echo "qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp $vcpus -m $mem -nodefaults -no-user-config" \
         "-display none -serial stdio -no-reboot -device i8042 -device virtio-rng-device -kernel $art/vmlinux -initrd $art/initramfs.cpio -append '$cmdline'"
}
fc_cmd() {
    cat > "$work/fc.json" <<JSON
{ "boot-source": { "kernel_image_path": "$art/vmlinux", "initrd_path": "$art/initramfs.cpio", "boot_args": "$cmdline" },
  "drives": [], "entropy": {}, "machine-config": { "vcpu_count": $vcpus, "mem_size_mib": $mem } }
JSON
    echo "$art/firecracker --no-api --config-file $work/fc.json"
}

# In the lab, a boot whose guest memory lands on L1 pages that an earlier guest used was
# 1.4-2.5 s slower (the guest's early memory setup, for every VMM alike): an artefact of
# the software emulation under L1, absent on hardware. Writing over guest-sized memory in
# L1 before each boot returns those pages in a clean state, so every boot starts alike.
scrub_lab_memory() {
    [ -n "${HULL_IN_LAB:-}" ] || return 0
    dd if=/dev/zero of=/dev/null bs="${mem}M" count=1 2>/dev/null
}

# One boot: prints "<init_s> <exit_s> <overhead_kib> [<vmm_ready_s>]" (times from process
# start; the last only for hull, from its --timings line).
# Nothing polls while the guest boots: in a one-CPU lab a polling loop competes with the
# vCPU thread and slows every VMM. The reader that timestamps the console lines notices
# the mark itself and samples the VMM's memory then (the init sleeps 1 s after it).
boot_once() {
    local cmd=$1 log=$work/console fifo=$work/fifo start vpid reader watchdog t_init
    : > "$log"
    rm -f "$fifo" "$work/rss" "$work/vpid"
    mkfifo "$fifo"
    scrub_lab_memory
    (
        while IFS= read -r line; do
            printf '%s %s\n' "$EPOCHREALTIME" "$line"
            if [[ $line == *HULL-BENCH-INIT* && ! -e $work/rss ]]; then
                read -r vpid < "$work/vpid"
                overhead_kib "$vpid" > "$work/rss"
            fi
        done < "$fifo" > "$log"
    ) &
    reader=$!
    start=$EPOCHREALTIME
    # `exec`: the background job is the VMM itself, so its pid needs no search.
    eval "exec $cmd" < /dev/null > "$fifo" 2>&1 &
    vpid=$!
    echo "$vpid" > "$work/vpid"
    (sleep 120 && kill -KILL "$vpid") > /dev/null 2>&1 &
    watchdog=$!
    wait "$vpid"
    local end=$EPOCHREALTIME
    pkill -P "$watchdog" sleep 2>/dev/null
    kill "$watchdog" 2>/dev/null
    wait "$reader"
    t_init=$(grep -m1 HULL-BENCH-INIT "$log" | cut -d' ' -f1)
    [ -n "$t_init" ] || { echo "fail fail fail"; sed 's/^/    | /' "$log" | tail -n 20 >&2; return; }
    local rss ready
    rss=$(cat "$work/rss" 2>/dev/null)
    # hull's VMM reports its own startup phases (--timings): when its vCPUs were running.
    ready=$(grep -o 'vcpus_us=[0-9]*' "$log" | head -n1 | awk -F= '{ printf "%.3f", $2 / 1e6 }')
    echo "$(elapsed "$start" "$t_init") $(elapsed "$start" "$end") ${rss:-n/a}${ready:+ $ready}"
}

# Reports one VMM's runs.
report() {
    local name=$1
    echo "RESULT $name median_init_s=$(cut -d' ' -f1 "$work/$name" | grep -v fail | median)" \
        "median_exit_s=$(cut -d' ' -f2 "$work/$name" | grep -v fail | median)" \
        "median_rss_overhead_kib=$(cut -d' ' -f3 "$work/$name" | grep -v 'fail\|n/a' | median)" \
        "init_range_s=$(cut -d' ' -f1 "$work/$name" | grep -v fail | spread)" \
        "median_vmm_ready_s=$(awk 'NF == 4 { print $4 }' "$work/$name" | median)" \
        "failures=$(grep -c fail "$work/$name")"
}

echo "bench: $(uname -r), $(nproc) CPUs, $runs runs, ${mem} MiB, $vcpus vCPU(s)${HULL_IN_LAB:+, lab: L1 memory scrubbed before each boot}"
vmms="hull"
if command -v qemu-system-x86_64 >/dev/null; then vmms="$vmms qemu"; else echo "qemu-system-x86_64 not installed: QEMU not measured"; fi
if [ -x "$art/firecracker" ]; then vmms="$vmms firecracker"; fi
# Interleaved, so a drift in the lab during the run weighs on every VMM alike.
for name in $vmms; do : > "$work/$name"; done
for i in $(seq 1 "$runs"); do
    for name in $vmms; do
        case $name in
            hull) cmd=$(hull_cmd) ;;
            qemu) cmd=$(qemu_cmd) ;;
            firecracker) cmd=$(fc_cmd) ;;
        esac
        r=$(boot_once "$cmd")
        echo "$name run $i: init_s exit_s rss_overhead_kib [vmm_ready_s] = $r"
        echo "$r" >> "$work/$name"
    done
done
for name in $vmms; do report "$name"; done
