#!/usr/bin/env bash
# Inner half of bench-files.sh: runs where /dev/kvm boots Linux.
#   bench-files-inner.sh ARTIFACT_DIR      (env: HULL_BENCH_RUNS)
set -euo pipefail
art=$1
runs=${HULL_BENCH_RUNS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HULL_ROOT=$work/store HULL_KERNEL=$art/vmlinux HULL_VMM=$art/vmm HULL_AGENT=$art/hull-agent
export HULL_BOOT_TIMEOUT=${HULL_BOOT_TIMEOUT:-300}
hull=$art/hull
mb=100
export BENCH_TIMEOUT=600

. "$(dirname "$0")/bench-lib.sh"

echo "bench: $(uname -r), $(nproc) CPUs, $runs runs, ${mb} MB"
"$hull" load -i "$art/image.tar" >/dev/null
"$hull" tag "$("$hull" images -q | head -n1)" bench:latest
"$hull" image rootfs bench >/dev/null

# A host sink on the loopback for container -> host, and a free port for host -> container.
sink_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 - "$sink_port" "$work/sink.log" <<'PY' &
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept()
    n, t = 0, time.time()
    while True:
        try:
            d = c.recv(1 << 20)
        except OSError:
            break
        if not d:
            break
        n += len(d)
    with open(sys.argv[2], "a") as log:
        log.write(f"{n} {time.time() - t:.3f}\n")
    c.close()
PY
sink=$!
trap 'kill $sink 2>/dev/null; rm -rf "$work"' EXIT
pub_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

"$hull" run -d --name big -p "127.0.0.1:$pub_port:5001" bench sh -c \
    "dd if=/dev/zero of=/data bs=1M count=$mb 2>/dev/null; sync; touch /ready; sleep 1000000" >/dev/null
until "$hull" exec big test -e /ready 2>/dev/null; do sleep 1; done

series commit_running "$hull" commit big bench:committed
series cp_out "$hull" cp big:/data "$work/data-copy"
# What the host's sink received, and in how long, per connection (a transfer cut
# short shows as fewer bytes).
sink_report() {
    echo "RESULT $1 sink_bytes_seconds: $(tail -n "$runs" "$work/sink.log" 2>/dev/null | tr '\n' ';')"
}
: > "$work/sink.log"
series net_guest_to_host "$hull" exec big sh -c "dd if=/dev/zero bs=64k count=$((mb * 16)) 2>/dev/null | nc 10.0.2.2 $sink_port"
sink_report net_guest_to_host
# The peer: QEMU -M microvm with its own virtio-net on a passt of the same options,
# the same kernel, a busybox initramfs that sends the same bytes and powers off.
if command -v qemu-system-x86_64 >/dev/null; then
    for i in $(seq 1 "$runs"); do
        sock=$work/qemu-passt.sock
        rm -f "$sock"
        passt --foreground --quiet --one-off --ipv4-only --socket "$sock" --address 10.0.2.15 --netmask 24 \
            --gateway 10.0.2.2 --mtu 1500 2>/dev/null &
        passt_pid=$!
        for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
        timeout 300 qemu-system-x86_64 -M microvm,acpi=off -enable-kvm -cpu host -smp 1 -m 256 -nodefaults \
            -no-user-config -display none -serial null -no-reboot -device i8042 -kernel "$art/vmlinux" -initrd "$art/qnet.cpio" \
            -append "console=ttyS0 reboot=k panic=-1 quiet rdinit=/init sink=$sink_port mb=$mb" \
            -netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$sock" -device virtio-net-device,netdev=n0 \
            >/dev/null 2>&1 || echo "bench: qemu run $i failed or timed out" >&2
        wait "$passt_pid" 2>/dev/null || true
    done
    sink_report net_guest_to_host_qemu_passt
fi
# Host -> container: a listener in the container (its exec is part of the time: one
# exec round trip), the host sends through the published port.
cat > "$work/h2g.py" <<'PY'
import socket, subprocess, sys, time
hull, port, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
listener = subprocess.Popen([hull, "exec", "big", "sh", "-c", "nc -l -p 5001 > /dev/null"])
deadline = time.time() + 120
while True:
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"\0" * (1 << 20))
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
chunk = b"\0" * (1 << 20)
for _ in range(mb - 1):
    c.sendall(chunk)
c.shutdown(socket.SHUT_WR)
c.settimeout(120)
c.recv(1)
sys.exit(listener.wait(timeout=120))
PY
series net_host_to_guest python3 "$work/h2g.py" "$hull" "$pub_port" "$mb"

"$hull" stop -t 1 big >/dev/null
series commit_stopped "$hull" commit big bench:committed
"$hull" rm -f big >/dev/null
