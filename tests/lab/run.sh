#!/usr/bin/env bash
# Run a command where real KVM guests can boot, as an unprivileged user with rw access
# to /dev/kvm, and exit with the command's status.
#
#   tests/lab/run.sh [--mode auto|lab|direct] [--timeout SECONDS] -- COMMAND [ARG...]
#
# lab     start an L1 Linux VM under QEMU's software emulation (TCG, -cpu max: emulated
#         AMD SVM, so L1 has a working /dev/kvm), share the host's root over 9p, and run
#         COMMAND inside L1, chrooted into the host root: same paths, same binaries.
# direct  run COMMAND on this host (its /dev/kvm boots Linux guests).
# auto    (default) lab when the host's KVM cannot boot an unmodified Linux guest (a PVM
#         host: /sys/module/kvm_pvm) or there is no /dev/kvm; direct otherwise.
#
# COMMAND runs in the current directory with the caller's PATH, CI, RUST_*, NEXTEST_*,
# CARGO_TERM_* and HULL_* variables, HOME and TMPDIR on a scratch tmpfs.  As root, it
# runs as the user $HULL_TEST_USER (default hull-test, created when missing);
# otherwise as the caller.  Its stdout and stderr stream to this script's stdout.
# Build test binaries on the host first: compiling inside L1 is emulated and slow.
#
# Environment: HULL_LAB_MODE (as --mode), HULL_LAB_TIMEOUT (seconds, default 3000),
# HULL_LAB_MEM (MiB, default 3072), HULL_LAB_CPUS (default 1, at most 4),
# HULL_LAB_KERNEL (an L1 vmlinuz; default Debian's linux-image-amd64 in /boot).
# Exit status: COMMAND's; 124 when L1 timed out; 125 when the lab itself failed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

say() { echo "lab: $*" >&2; }
die() { echo "lab: error: $*" >&2; exit 125; }

mode=${HULL_LAB_MODE:-auto}
timeout_s=${HULL_LAB_TIMEOUT:-3000}
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) mode=${2:?--mode needs a value}; shift 2 ;;
        --timeout) timeout_s=${2:?--timeout needs a value}; shift 2 ;;
        --) shift; break ;;
        *) die "usage: $0 [--mode auto|lab|direct] [--timeout SECONDS] -- COMMAND [ARG...]" ;;
    esac
done
[ $# -gt 0 ] || die "usage: $0 [--mode auto|lab|direct] [--timeout SECONDS] -- COMMAND [ARG...]"

# Which mode this host needs; prints lab or direct.
detect_mode() {
    if [ -d /sys/module/kvm_pvm ]; then echo lab
    elif [ ! -e /dev/kvm ]; then echo lab
    else echo direct
    fi
}

# The unprivileged user that runs the command: prints "uid gid".
test_user_ids() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "$(id -u) $(id -g)"
        return
    fi
    local user=${HULL_TEST_USER:-hull-test}
    if ! getent passwd "$user" >/dev/null; then
        say "creating the unprivileged test user $user"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$user" || die "cannot create user $user"
    fi
    echo "$(id -u "$user") $(id -g "$user")"
}

# Tests that skip append a line to $HULL_SKIP_LOG.  The command gets its own file,
# writable by the test user, copied into the caller's afterwards.
skip_log=""
caller_skip_log=${HULL_SKIP_LOG:-}
make_skip_log() {
    local dir=$1 uid=$2 gid=$3
    [ -n "$caller_skip_log" ] || return 0
    skip_log=$dir/skip.log
    : > "$skip_log"
    chmod 0644 "$skip_log"
    [ "$(id -u)" -ne 0 ] || chown "$uid:$gid" "$skip_log"
}
collect_skip_log() {
    if [ -n "$skip_log" ] && [ -s "$skip_log" ]; then cat "$skip_log" >> "$caller_skip_log"; fi
}

# Writes the script that runs COMMAND: cwd, environment, then exec.
write_job_script() {
    local out=$1; shift
    {
        echo '#!/bin/bash'
        printf 'cd %q || exit 125\n' "$PWD"
        local name
        while IFS= read -r name; do
            printf 'export %s=%q\n' "$name" "${!name}"
        done < <(compgen -e | grep -E '^(PATH|CI|TERM|RUST_[A-Z_]+|NEXTEST_[A-Z_]+|CARGO_TERM_[A-Z_]+|HULL_[A-Z0-9_]+)$' || true)
        echo 'export HOME=/tmp/home TMPDIR=/tmp'
        # Tells a job it runs in the lab (L1 under QEMU's software emulation).
        echo 'export HULL_IN_LAB=1'
        echo '[ -d /run/hull-small-fs ] && export HULL_SMALL_FS=/run/hull-small-fs'
        if [ -n "$skip_log" ]; then printf 'export HULL_SKIP_LOG=%q\n' "$skip_log"; fi
        echo 'mkdir -p "$HOME"'
        printf 'exec'
        printf ' %q' "$@"
        echo
    } > "$out"
}

run_direct() {
    local ids uid gid
    ids=$(test_user_ids)
    uid=${ids% *} gid=${ids#* }
    if [ "$(id -u)" -ne 0 ]; then exec "$@"; fi  # already unprivileged; HULL_SKIP_LOG as is
    [ -e /dev/kvm ] || die "/dev/kvm does not exist"
    local kvm_gid
    kvm_gid=$(stat -c %g /dev/kvm)
    local kvm_mode
    kvm_mode=$(stat -c %a /dev/kvm)
    [ $(( ${kvm_mode: -2:1} & 6 )) -eq 6 ] \
        || die "/dev/kvm is not group read-write (mode $kvm_mode); the test user gets access through its group"
    setpriv --reuid="$uid" --regid="$gid" --clear-groups test -x "$PWD" \
        || die "the test user (uid $uid) cannot enter $PWD; use a checkout it can read"
    local home rc=0
    home=$(mktemp -d)
    chown "$uid:$gid" "$home"
    make_skip_log "$home" "$uid" "$gid"
    if [ -n "$skip_log" ]; then export HULL_SKIP_LOG=$skip_log; fi
    # A small file system of the test user's own, for tests of a full disk.
    mkdir "$home/small-fs"
    mount -t tmpfs -o "size=320m,mode=0700,uid=$uid,gid=$gid" tmpfs "$home/small-fs" \
        && export HULL_SMALL_FS=$home/small-fs
    HOME=$home TMPDIR=$home setpriv --reuid="$uid" --regid="$gid" --groups="$kvm_gid" -- "$@" || rc=$?
    collect_skip_log
    umount "$home/small-fs" 2>/dev/null || true
    rm -rf "$home"
    exit "$rc"
}

find_l1_kernel() {
    if [ -n "${HULL_LAB_KERNEL:-}" ]; then
        [ -f "$HULL_LAB_KERNEL" ] || die "HULL_LAB_KERNEL=$HULL_LAB_KERNEL is not a file"
        echo "$HULL_LAB_KERNEL"
        return
    fi
    local k ver
    for k in $(ls -1v /boot/vmlinuz-*-amd64 2>/dev/null | sort -rV); do
        ver=${k#/boot/vmlinuz-}
        if [ -f "/lib/modules/$ver/modules.dep" ] && grep -q '/9pnet_virtio\.ko' "/lib/modules/$ver/modules.dep"; then
            echo "$k"
            return
        fi
    done
    die "no L1 kernel with 9p modules: install the Debian package linux-image-amd64"
}

# Prints module files (relative to /lib/modules/VER) for NAME and its dependencies,
# dependencies first.
module_closure() {
    local dep=$1 name=$2 line path deps d
    local pattern
    pattern=$(echo "$name" | sed 's/[-_]/[-_]/g')
    line=$(grep -E "/${pattern}\.ko(\.[a-z]+)?:" "$dep" | head -n1) || true
    [ -n "$line" ] || return 1
    path=${line%%:*}
    deps=${line#*:}
    # modules.dep lists the full closure, nearest first: load from the end.
    for d in $(echo "$deps" | tr ' ' '\n' | tac); do echo "$d"; done
    echo "$path"
}

# Builds (or reuses) the L1 initramfs; prints its path.
l1_initramfs() {
    local kernel=$1 ver dep cache key out work m f
    ver=${kernel##*/vmlinuz-}
    [ -n "${HULL_LAB_KERNEL:-}" ] && ver=${HULL_LAB_MODULES_VERSION:-$ver}
    dep=/lib/modules/$ver/modules.dep
    [ -f "$dep" ] || die "no modules for L1 kernel $ver ($dep): install the Debian package linux-image-amd64"
    [ -x /bin/busybox ] && file_is_static /bin/busybox \
        || die "no static busybox for the L1 initramfs: install the Debian package busybox-static"
    cache=${XDG_CACHE_HOME:-${HOME:?}/.cache}/hull/lab
    key=$( { echo "$ver"; cat "$here/l1-init.sh" "$0" /bin/busybox; } | sha256sum | cut -c1-16)
    out=$cache/l1-initramfs-$key.cpio.gz
    if [ -f "$out" ]; then echo "$out"; return; fi
    mkdir -p "$cache"
    work=$(mktemp -d "$cache/initramfs.XXXXXX")
    mkdir -p "$work/bin" "$work/modules"
    cp /bin/busybox "$work/bin/busybox"
    cp "$here/l1-init.sh" "$work/init"
    chmod 0755 "$work/init"
    : > "$work/modules.load"
    local mods=""
    # dummy: L1's uplink, so user-mode networking (passt) has a routable interface.
    for m in virtio_pci 9pnet_virtio 9p kvm_amd kvm_intel dummy; do
        mods="$mods $(module_closure "$dep" "$m" | tr '\n' ' ')" \
            || die "module $m is missing from $dep"
    done
    for f in $(echo "$mods" | tr ' ' '\n' | awk 'NF && !seen[$0]++'); do
        case "$f" in */kvm-intel.ko*) continue ;; esac  # TCG emulates SVM only
        cp "/lib/modules/$ver/$f" "$work/modules/${f##*/}"
        case "$f" in *.ko) ;; *) die "compressed module $f: not supported by the lab" ;; esac
        echo "${f##*/}" >> "$work/modules.load"
    done
    (cd "$work" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$work"
    echo "$out"
}

file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }

run_lab() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 \
        || die "qemu-system-x86_64 not found: install the Debian package qemu-system-x86"
    command -v timeout >/dev/null 2>&1 || die "timeout not found: install the Debian package coreutils"
    local kernel initramfs ids uid gid job cpus mem
    kernel=$(find_l1_kernel)
    initramfs=$(l1_initramfs "$kernel")
    ids=$(test_user_ids)
    uid=${ids% *} gid=${ids#* }
    case "$PWD$repo" in *[[:space:],]*) die "the lab cannot run from a path with spaces or commas: $PWD" ;; esac
    mkdir -p "$repo/.lab/jobs"
    job=$(mktemp -d "$repo/.lab/jobs/job.XXXXXX")
    chmod 0755 "$repo/.lab" "$repo/.lab/jobs" "$job"
    trap 'rm -rf "$job"' EXIT
    make_skip_log "$job" "$uid" "$gid"
    write_job_script "$job/cmd.sh" "$@"
    chmod 0644 "$job/cmd.sh"
    # One CPU by default: with two, L1 has wedged for good while one CPU sat in an L2
    # guest and the other set up or tore down a VM (nested SVM under TCG).
    cpus=${HULL_LAB_CPUS:-1}
    [ "$cpus" -le 4 ] || cpus=4
    mem=${HULL_LAB_MEM:-3072}
    say "L1: $(basename "$kernel") under QEMU TCG, $cpus CPUs, $mem MiB, timeout ${timeout_s}s; user $uid"
    local qemu_rc attempt
    for attempt in 1 2; do
        qemu_rc=0
        start_l1 "$kernel" "$initramfs" "$job" "$uid" "$gid" "$cpus" "$mem" || qemu_rc=$?
        # Retry only an L1 that never booted as far as the shared root (an emulated
        # early-boot failure); a command that started is never run twice.
        [ ! -f "$job/booted" ] && [ "$qemu_rc" -ne 124 ] && [ "$qemu_rc" -ne 137 ] \
            && [ "$attempt" -eq 1 ] || break
        say "L1 stopped before it reached the shared root (qemu status $qemu_rc); booting it again"
    done
    if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
        say "error: L1 timed out after ${timeout_s}s"
        exit 124
    fi
    collect_skip_log
    [ -f "$job/rc" ] || die "L1 exited (qemu status $qemu_rc) without reporting the command's status"
    local rc
    rc=$(cat "$job/rc")
    exit "$rc"
}

start_l1() {
    local kernel=$1 initramfs=$2 job=$3 uid=$4 gid=$5 cpus=$6 mem=$7
    timeout --kill-after=20 "$timeout_s" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem" \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$kernel" -initrd "$initramfs" \
        -append "console=ttyS0 loglevel=3 panic=-1 no_timer_check rdinit=/init hull.job=$job hull.uid=$uid hull.gid=$gid hull.expose=$repo,$PWD" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,id=hostroot,multidevs=remap \
        < /dev/null
}

[ "$mode" = auto ] && mode=$(detect_mode)
case "$mode" in
    lab) run_lab "$@" ;;
    direct) run_direct "$@" ;;
    *) die "unknown mode $mode (auto, lab or direct)" ;;
esac
