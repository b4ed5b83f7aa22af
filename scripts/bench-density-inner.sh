#!/usr/bin/env bash
# Inner half of bench-density.sh: runs where /dev/kvm boots Linux.
#   bench-density-inner.sh ARTIFACT_DIR      (env: HULL_DENSITY_COUNTS)
set -euo pipefail
art=$1
work=$(mktemp -d)
export HULL_ROOT=$work/store HULL_KERNEL=$art/vmlinux HULL_VMM=$art/vmm HULL_AGENT=$art/hull-agent
export HULL_BOOT_TIMEOUT=${HULL_BOOT_TIMEOUT:-300}
hull=$art/hull
qemu_pid=
cleanup() {
    "$hull" rm -f $("$hull" ps -aq) >/dev/null 2>&1 || true
    [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# RSS and PSS (KiB) of the given processes, summed: "rss pss".
mem_of() {
    local rss=0 pss=0 pid r p
    for pid in "$@"; do
        # passt makes itself undumpable: its smaps cannot be read.
        r=$(awk '/^Rss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
        p=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
        rss=$((rss + r)) pss=$((pss + p))
    done
    echo "$rss $pss"
}
# A field of `hull inspect NAME`: field NAME KEY...
field() {
    local name=$1; shift
    "$hull" inspect "$name" | python3 -c 'import json, sys
v = json.load(sys.stdin)[0]
for k in sys.argv[1:]: v = v[k]
print(v)' "$@"
}
# Every process of hull's for container $1: its monitor and the monitor's children.
pids_of() {
    local id monitor
    id=$(field "$1" Id)
    monitor=$(pgrep -f "container-monitor $id" | head -n1)
    echo "$monitor $(pgrep -P "$monitor" | tr '\n' ' ')"
}
vmm_of() { field "$1" State Pid; }

"$hull" load -i "$art/image.tar" >/dev/null
"$hull" tag "$("$hull" images -q | head -n1)" bench:latest
"$hull" image rootfs bench >/dev/null
"$hull" create --name probe bench true >/dev/null
mem_mib=$(field probe Hull VM Memory)
"$hull" rm probe >/dev/null
mem_mib=$((mem_mib >> 20))
echo "bench: $(uname -r), $(nproc) CPUs, guest memory ${mem_mib} MiB (hull's default)"

for n in $HULL_DENSITY_COUNTS; do
    for i in $(seq 1 "$n"); do "$hull" run -d --name "idle-$i" bench sleep 1000000 >/dev/null; done
    sleep 5
    all=() vmms=()
    for i in $(seq 1 "$n"); do
        read -r -a p <<< "$(pids_of "idle-$i")"; all+=("${p[@]}"); vmms+=("$(vmm_of "idle-$i")")
    done
    read -r rss pss <<< "$(mem_of "${all[@]}")"
    read -r vrss vpss <<< "$(mem_of "${vmms[@]}")"
    # The VMM's own memory: its RSS outside the guest RAM mapping.
    own=0
    for v in "${vmms[@]}"; do
        o=$(awk -v want=$((mem_mib * 1024)) '
            /^[0-9a-f]+-[0-9a-f]+ / { cur = 0 }
            /^Size:/ { cur = ($2 == want) }
            /^Rss:/ { total += $2; if (cur) guest += $2 }
            END { print total - guest }' "/proc/$v/smaps")
        own=$((own + o))
    done
    echo "RESULT n=$n per_container_rss_kib=$((rss / n)) per_container_pss_kib=$((pss / n)) vmm_rss_kib=$((vrss / n)) vmm_pss_kib=$((vpss / n)) vmm_own_rss_kib=$((own / n))"
    "$hull" rm -f $("$hull" ps -aq) >/dev/null
done

# Memory the guest frees goes back: hold 200 MB in dd's buffer for 10 s, then free it.
"$hull" run -d --name balloon bench sleep 1000000 >/dev/null
sleep 5
vmm=$(vmm_of balloon)
before=$(mem_of "$vmm" | cut -d' ' -f1)
"$hull" exec balloon sh -c 'dd if=/dev/zero bs=200M count=1 | sleep 10' >/dev/null 2>&1 &
sleep 8
held=$(mem_of "$vmm" | cut -d' ' -f1)
sleep 10
after=$(mem_of "$vmm" | cut -d' ' -f1)
returned=$(( (held - after) * 100 / (held - before > 0 ? held - before : 1) ))
echo "RESULT balloon vmm_rss_kib_before=$before held=$held five_s_after_free=$after returned_percent=$returned"
"$hull" rm -f balloon >/dev/null

# The peer: QEMU microvm, same kernel and memory, to an idle shell.
if command -v qemu-system-x86_64 >/dev/null; then
    qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m "$mem_mib" \
        -nodefaults -no-user-config -display none -serial file:"$work/qemu.log" -no-reboot -device i8042 \
        -kernel "$art/vmlinux" -initrd "$art/idle-initramfs.cpio" \
        -append "console=ttyS0 reboot=k panic=-1 quiet rdinit=/init" &
    qemu_pid=$!
    for _ in $(seq 1 120); do grep -q HULL-IDLE "$work/qemu.log" 2>/dev/null && break; sleep 1; done
    sleep 5
    read -r qrss qpss <<< "$(mem_of "$qemu_pid")"
    echo "RESULT qemu_microvm_idle rss_kib=$qrss pss_kib=$qpss"
fi
