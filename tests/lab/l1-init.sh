#!/bin/busybox sh
# PID 1 of the lab's L1 VM (busybox sh, from the lab initramfs).
#
# Loads the modules listed in /modules.load, mounts the host's root over 9p at /host,
# gives the test user its own /dev/kvm, runs the job's cmd.sh chrooted in /host as that
# user, writes the exit status to the job's `rc` file and powers off.
# Kernel command line: hull.job=<job dir on the host> hull.uid=<uid> hull.gid=<gid>
#                      hull.expose=<dir>[,<dir>...]  (directories the user must reach)
export PATH=/bin
/bin/busybox --install -s /bin

say() { echo "lab-l1: $*"; }
halt_now() {
    sync
    poweroff -f
    reboot -f
}
fail() {
    say "error: $*"
    halt_now
}

mkdir -p /proc /sys /dev /host /orig /run
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

job="" uid="" gid="" expose=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        hull.job=*) job=${arg#hull.job=} ;;
        hull.uid=*) uid=${arg#hull.uid=} ;;
        hull.gid=*) gid=${arg#hull.gid=} ;;
        hull.expose=*) expose=${arg#hull.expose=} ;;
    esac
done
[ -n "$job" ] && [ -n "$uid" ] && [ -n "$gid" ] || fail "hull.job, hull.uid and hull.gid are required"

while read -r mod; do
    insmod "/modules/$mod" || say "warning: insmod $mod failed"
done < /modules.load
[ -e /dev/kvm ] || say "warning: L1 has no /dev/kvm (no SVM/VMX in the outer CPU model?)"

mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose hostroot /host \
    || fail "cannot mount the host root over 9p"
mount --bind /host /orig
[ -d "/host$job" ] || fail "job directory $job not found on the host root"
touch "/host$job/booted"

# A private view of the kernel file systems and scratch space; nothing of the host's
# /dev, /proc, /sys, /tmp or /run is used or written.
mount -t devtmpfs devtmpfs /host/dev
mkdir -p /dev/pts /dev/shm
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t cgroup2 cgroup2 /host/sys/fs/cgroup 2>/dev/null || true
mount -t tmpfs -o mode=1777 tmpfs /host/tmp
mount -t tmpfs -o mode=755 tmpfs /host/run
# A small file system of the test user's own, for tests of a full disk
# ($HULL_SMALL_FS in the job, see run.sh).
mkdir -p /host/run/hull-small-fs
mount -t tmpfs -o "size=320m,mode=0700,uid=$uid,gid=$gid" tmpfs /host/run/hull-small-fs

# L1 has no NIC. A dummy uplink with a default route gives user-mode networking
# (passt, which needs a routable interface) something to stand on; traffic to the
# outside goes nowhere, traffic to L1's own addresses and loopback works.
ip_() { chroot /host /sbin/ip "$@"; }
ip_ link set lo up
if ip_ link add hull-up0 type dummy 2>/dev/null; then
    ip_ addr add 192.0.2.10/24 dev hull-up0
    ip_ link set hull-up0 up
    ip_ route add default via 192.0.2.1 dev hull-up0
else
    say "warning: no dummy network interface; container networking tests will fail"
fi

# The unprivileged user owns L1's /dev/kvm: its only privilege.
[ -e /dev/kvm ] && chown "$uid:$gid" /dev/kvm && chmod 0600 /dev/kvm

as_user() { chroot /host /usr/bin/setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"; }

# Directories the user must reach (the checkout) may sit below one it cannot enter
# (a clone in /root).  Cover the first such ancestor with an empty tmpfs and bind the
# directory back at its own path; the host's permissions are left as they are.
for dir in $(echo "$expose" | tr ',' ' '); do
    # Below L1's own /tmp or /run (a checkout in /tmp): bind the host's directory in.
    if [ ! -d "/host$dir" ] && [ -d "/orig$dir" ]; then
        mkdir -p "/host$dir"
        mount --bind "/orig$dir" "/host$dir"
    fi
    as_user test -x "$dir" && continue
    blocked=""
    path=""
    for part in $(echo "$dir" | tr '/' ' '); do
        path="$path/$part"
        if ! as_user test -x "$path"; then blocked=$path; break; fi
    done
    [ -n "$blocked" ] && [ "$blocked" != "$dir" ] \
        || fail "user $uid cannot enter $dir (mode $(stat -c %a "/orig$dir"))"
    if ! grep -q " /host$blocked tmpfs " /proc/mounts; then
        mount -t tmpfs -o mode=755 tmpfs "/host$blocked"
    fi
    mkdir -p "/host$dir"
    mount --bind "/orig$dir" "/host$dir"
    as_user test -x "$dir" || fail "user $uid still cannot enter $dir"
done

stty -opost 2>/dev/null || true
say "running job as uid $uid"
# The job runs with the host's root as the root of L1's mount namespace, as
# switch_root leaves it, not in a chroot: the kernel refuses user namespaces (which
# passt, the containers' network, uses to sandbox itself) to chrooted processes.
[ -x /host/bin/busybox ] || fail "no /bin/busybox on the host: install the Debian package busybox-static"
cd /host || fail "cannot enter /host"
mount --move . / || fail "cannot make the host root L1's root"
exec chroot . /bin/busybox sh -c '
    export PATH=/usr/sbin:/usr/bin:/sbin:/bin
    ( /usr/bin/setpriv --reuid="$1" --regid="$2" --clear-groups /bin/bash "$3/cmd.sh"; echo $? > /run/rc ) 2>&1 | cat
    rc=$(cat /run/rc 2>/dev/null || echo 125)
    echo "$rc" > "$3/rc.tmp" && mv "$3/rc.tmp" "$3/rc" || echo "lab-l1: error: cannot write $3/rc"
    sync
    umount /run /tmp /sys/fs/cgroup /sys /proc /dev/shm /dev/pts 2>/dev/null
    sync
    /bin/busybox poweroff -f
    /bin/busybox reboot -f' l1-job "$uid" "$gid" "$job"
