#!/usr/bin/env bash
# What the guest kernel's options cost at boot: boots two kernels (a baseline and the
# current build) under QEMU -M microvm with KVM, N times each, alternating, and prints
# the median time to /init; then boots the current one with initcall_debug and prints
# the initcalls that took 1 ms or more. A benchmark, not a test: it runs where
# /dev/kvm boots Linux, so here through the lab.
#
#   kernel-config/boot-cost.sh BASELINE_VMLINUX [RUNS]       (default 5 runs)
#
# The current kernel is kernel-config/build.sh's. Build a baseline by checking out an
# older hull-guest.config and running build.sh (each fragment has its own cache entry).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
baseline=${1:?usage: $0 BASELINE_VMLINUX [RUNS]}
runs=${2:-5}
current=$("$here/build.sh")

work=$repo/.lab/boot-cost
rm -rf "$work"
mkdir -p "$work/initramfs/bin" "$work/probe"
cp /bin/busybox "$work/initramfs/bin/busybox"
cp "$repo/tests/lab/guest-init.sh" "$work/initramfs/init"
chmod 0755 "$work/initramfs/init"
(cd "$work/initramfs" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$work/initramfs.cpio.gz"
echo "boot-cost-probe" > "$work/probe/probe.txt"
mkfs.erofs --quiet "$work/probe.erofs" "$work/probe" >/dev/null
cp "$baseline" "$work/baseline"
cp "$current" "$work/current"
chmod -R a+rwX "$work"

cat > "$work/job.sh" <<EOF
set -e
cd $work
for i in \$(seq 1 $runs); do
    for k in baseline current; do
        HULL_BOOT_RUNS=1 $repo/tests/lab/boot-test.sh \$k initramfs.cpio.gz probe.erofs boot-cost-probe \
            | sed -n "s/^boot 1: \/init reached \([0-9.]*\) s.*uptime \([0-9.]*\) s.*/\$k \1 \2/p" >> times.txt
    done
done
HULL_BOOT_VERBOSE=1 HULL_BOOT_APPEND="initcall_debug ignore_loglevel" HULL_BOOT_LOG=$work/initcalls.log \
    $repo/tests/lab/boot-test.sh current initramfs.cpio.gz probe.erofs boot-cost-probe >/dev/null
EOF
"$repo/tests/lab/run.sh" --timeout 1500 -- bash "$work/job.sh"

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
for k in baseline current; do
    init=$(awk -v k=$k '$1 == k { print $2 }' "$work/times.txt" | median)
    up=$(awk -v k=$k '$1 == k { print $3 }' "$work/times.txt" | median)
    echo "$k: $(stat -c %s "$work/$k") bytes; /init reached after QEMU start: median $init s; guest uptime at /init: median $up s ($runs runs)"
done
echo "initcalls of the current kernel taking >= 1 ms (usecs, name):"
# The guest has no kallsyms: initcalls are printed as addresses, named here from the
# vmlinux's symbol table.
nm "$current" | awk '{ print tolower($1), $3 }' > "$work/symbols.txt"
sed -n 's/.*initcall \(0x\)\{0,1\}\([^ ]*\) returned .* after \([0-9]*\) usecs.*/\3 \2/p' "$work/initcalls.log" \
    | awk '$1 >= 1000' | sort -rn | head -n 30 \
    | awk 'NR == FNR { name[$1] = $2; next } { print $1, (tolower($2) in name) ? name[tolower($2)] : $2 }' \
        "$work/symbols.txt" -
