#!/bin/busybox sh
# /init of the probe initramfs booted by boot-test.sh with hull's guest kernel.
# Prints HULL-GUEST-* marker lines that the test asserts, then reboots: the VMM sees
# the i8042 reset (or the triple fault after it) and exits.
export PATH=/bin
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp /mnt/base /mnt/rw /mnt/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
echo "HULL-GUEST-UP uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

for fs in erofs ext4 overlay tmpfs cgroup2 proc sysfs devtmpfs; do
    grep -qw "$fs" /proc/filesystems || echo "HULL-GUEST-FAIL filesystem $fs missing"
done
mkdir -p /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup && [ -f /sys/fs/cgroup/cgroup.controllers ] \
    || echo "HULL-GUEST-FAIL cgroup2 mount"
for ns in mnt uts ipc pid net user cgroup; do
    [ -e "/proc/self/ns/$ns" ] || echo "HULL-GUEST-FAIL namespace $ns missing"
done
unshare -m -u -i -n -p -f sh -c 'hostname inner && [ "$(hostname)" = inner ]' \
    || echo "HULL-GUEST-FAIL unshare of mount/uts/ipc/net/pid namespaces"

# The container root the way hull builds it: EROFS base on a read-only virtio-blk disk,
# a tmpfs upper, overlayfs on top.
if [ -b /dev/vda ]; then
    mount -t erofs -o ro /dev/vda /mnt/base || echo "HULL-GUEST-FAIL mount erofs"
    mount -t tmpfs tmpfs /mnt/rw && mkdir -p /mnt/rw/upper /mnt/rw/work
    mount -t overlay overlay -o lowerdir=/mnt/base,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /mnt/root \
        || echo "HULL-GUEST-FAIL mount overlay"
    echo "HULL-GUEST-EROFS $(cat /mnt/root/probe.txt)"
    echo written > /mnt/root/new.txt
    [ -f /mnt/rw/upper/new.txt ] && [ ! -e /mnt/base/new.txt ] && echo "HULL-GUEST-OVERLAY-WRITE ok"
else
    echo "HULL-GUEST-FAIL no /dev/vda (virtio-mmio command-line devices)"
fi
[ -e /sys/class/net/eth0 ] && echo "HULL-GUEST-NET eth0" || echo "HULL-GUEST-FAIL no eth0 (virtio-net)"
rng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
case "$rng" in virtio_rng*) echo "HULL-GUEST-RNG $rng" ;; *) echo "HULL-GUEST-FAIL no virtio-rng ($rng)" ;; esac

echo "HULL-GUEST-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
reboot -f
sleep 5
echo "HULL-GUEST-FAIL still running after reboot -f"
