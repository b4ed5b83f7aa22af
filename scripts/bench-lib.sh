# Helpers the benchmark scripts share; sourced, not run.

# The artifacts a lab benchmark needs, in DIR (emptied first): the guest kernel,
# release builds of hull, vmm and the agent, and the busybox image as a tar.
bench_artifacts() {
    local dir=$1 kernel
    kernel=$(kernel-config/build.sh)
    cargo build --quiet --release -p hull
    cargo build --quiet --release -p vmm -p guest-agent --target x86_64-unknown-linux-musl
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$kernel" "$dir/vmlinux"
    cp target/release/hull target/x86_64-unknown-linux-musl/release/vmm target/x86_64-unknown-linux-musl/release/hull-agent "$dir/"
    /usr/bin/python3 scripts/busybox-image.py "$dir/layout" >/dev/null
    tar -C "$dir/layout" -cf "$dir/image.tar" .
}

# A trivial initramfs in DIR/initramfs.cpio whose /init reboots at once: a VMM's bare
# boot-to-exit of the kernel.
bench_trivial_initramfs() {
    local dir=$1
    mkdir -p "$dir/initramfs/bin"
    cp /bin/busybox "$dir/initramfs/bin/busybox"
    printf '#!/bin/busybox sh\n/bin/busybox reboot -f\n' > "$dir/initramfs/init"
    chmod 0755 "$dir/initramfs/init"
    (cd "$dir/initramfs" && find . -print0 | cpio --null -o -H newc --quiet) > "$dir/initramfs.cpio"
}

# The median of numbers on stdin, or n/a.
median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Seconds a command takes (at most $BENCH_TIMEOUT, 300 by default), or "fail" with
# the end of its output on stderr. Needs $work.
timed() {
    local s=$EPOCHREALTIME
    if timeout "${BENCH_TIMEOUT:-300}" "$@" > "$work/last.out" 2>&1; then
        awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", b - a }'
    else
        echo "bench: failed or timed out: $*: $(tail -n3 "$work/last.out" | tr '\n' ' ')" >&2
        echo fail
    fi
}

# Runs a command $runs times; prints each time, then a RESULT line with the median
# (and MB/s when $mb is set). Needs $work and $runs.
series() {
    local name=$1 m rate=""
    shift
    : > "$work/$name"
    for i in $(seq 1 "$runs"); do
        timed "$@" >> "$work/$name"
        echo "$name run $i: $(tail -n1 "$work/$name")"
    done
    m=$(grep -v fail "$work/$name" | median || true)
    if [ -n "${mb:-}" ]; then
        rate=" mb_per_s=$(awk -v m="$m" -v mb="$mb" 'BEGIN { if (m ~ /^[0-9.]+$/ && m > 0) printf "%.1f", mb / m; else print "n/a" }')"
    fi
    echo "RESULT $name median_s=$m runs=$runs failures=$(grep -c fail "$work/$name" || true)$rate" \
        "($(tr '\n' ' ' < "$work/$name"))"
}
