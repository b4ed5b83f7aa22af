#!/usr/bin/env bash
# Build hull's guest kernel (an uncompressed, PVH-bootable vmlinux) and cache it.
#
#   kernel-config/build.sh            build or reuse; print the vmlinux path on stdout
#   kernel-config/build.sh --check    only check tools and source, build nothing
#
# The kernel is `make tinyconfig` plus hull-guest.config, for Linux 6.1 LTS.  Its source
# is, in order: $HULL_KERNEL_SOURCE (a linux-*.tar.xz), Debian's linux-source-6.1
# package, or the kernel.org tarball pinned below (downloaded once, sha256-checked).
# The result lives in $XDG_CACHE_HOME/hull/kernel/<key>/vmlinux where <key> hashes the
# fragment, the source, the compiler and the build recipe; a second run is a cache hit.
# Later builds reuse the object tree of the same source, so a changed fragment rebuilds
# only what it touches.
# Progress goes to stderr, the path to stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/hull-guest.config
cache_root=${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/hull/kernel

# Bump when the build steps below change in a way that changes the vmlinux.
recipe=1
debian_source=/usr/src/linux-source-6.1.tar.xz
kernel_org_version=6.1.127
kernel_org_sha256=18b0d41d1a7fbad56045cde0d7fc176bfb18361d29c9f07e57109bbf21bf7876
kernel_org_url=https://cdn.kernel.org/pub/linux/kernel/v6.x/linux-$kernel_org_version.tar.xz

say() { echo "kernel: $*" >&2; }
die() { echo "kernel: error: $*" >&2; exit 1; }

check_tools() {
    local missing=() tool pkg
    for pair in gcc:build-essential make:make flex:flex bison:bison bc:bc perl:perl \
        xz:xz-utils sha256sum:coreutils flock:util-linux; do
        tool=${pair%%:*} pkg=${pair#*:}
        command -v "$tool" >/dev/null 2>&1 || missing+=("$pkg (for $tool)")
    done
    # objtool (x86_64) needs libelf's headers.
    if ! echo '#include <gelf.h>' | gcc -E - >/dev/null 2>&1; then
        missing+=("libelf-dev (for gelf.h)")
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        die "missing build tools; install the Debian packages: ${missing[*]}"
    fi
}

# Prints the path of the kernel source tarball, downloading the pinned one if needed.
find_source() {
    if [ -n "${HULL_KERNEL_SOURCE:-}" ]; then
        [ -f "$HULL_KERNEL_SOURCE" ] || die "HULL_KERNEL_SOURCE=$HULL_KERNEL_SOURCE is not a file"
        echo "$HULL_KERNEL_SOURCE"
        return
    fi
    if [ -f "$debian_source" ]; then
        echo "$debian_source"
        return
    fi
    local dl=$cache_root/download/linux-$kernel_org_version.tar.xz
    if [ ! -f "$dl" ]; then
        say "no $debian_source; downloading $kernel_org_url"
        mkdir -p "$(dirname "$dl")"
        local fetch
        if command -v curl >/dev/null 2>&1; then fetch=(curl -fsSL --connect-timeout 20 -o "$dl.part" "$kernel_org_url")
        elif command -v wget >/dev/null 2>&1; then fetch=(wget -q --timeout=20 -O "$dl.part" "$kernel_org_url")
        else die "no kernel source: install the Debian package linux-source-6.1 (or curl to download $kernel_org_url)"
        fi
        "${fetch[@]}" || die "no kernel source: install the Debian package linux-source-6.1 (download of $kernel_org_url failed)"
        echo "$kernel_org_sha256  $dl.part" | sha256sum -c --quiet - >&2 \
            || { rm -f "$dl.part"; die "sha256 mismatch for $kernel_org_url"; }
        mv "$dl.part" "$dl"
    fi
    echo "$dl"
}

# sha256 of the tarball, remembered per (path, size, mtime) so a cache hit stays fast.
source_id() {
    local tarball=$1 stamp memo
    stamp=$(stat -c '%n:%s:%Y' "$tarball")
    memo=$cache_root/source-ids/$(echo "$stamp" | sha256sum | cut -c1-32)
    if [ ! -f "$memo" ]; then
        mkdir -p "$(dirname "$memo")"
        sha256sum "$tarball" | cut -d' ' -f1 > "$memo.tmp"
        mv "$memo.tmp" "$memo"
    fi
    cat "$memo"
}

# Every CONFIG_ line of the fragment must survive olddefconfig unchanged.
verify_config() {
    local config=$1 line bad=()
    while IFS= read -r line; do
        case "$line" in CONFIG_*) grep -qxF "$line" "$config" || bad+=("$line") ;; esac
    done < "$fragment"
    if [ ${#bad[@]} -gt 0 ]; then
        die "options dropped by kconfig (a dependency is missing): ${bad[*]}"
    fi
}

build() {
    local tarball=$1 src_id=$2 out=$3
    local src=$cache_root/src-${src_id:0:16} obj=$cache_root/obj-${src_id:0:16}
    local log=$obj/build.log
    if [ ! -f "$src/.complete" ]; then
        say "unpacking $tarball"
        rm -rf "$src" "$src.tmp"
        mkdir -p "$src.tmp"
        tar -xf "$tarball" -C "$src.tmp" --strip-components=1
        touch "$src.tmp/.complete"
        mv "$src.tmp" "$src"
    fi
    mkdir -p "$obj"
    local jobs
    jobs=$(nproc)
    make_() { nice make -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" "$@" >>"$log" 2>&1; }
    : > "$log"
    say "configuring (tinyconfig + $(basename "$fragment"))"
    make_ tinyconfig || { tail -n 40 "$log" >&2; die "make tinyconfig failed (log: $log)"; }
    cat "$fragment" >> "$obj/.config"
    make_ olddefconfig || { tail -n 40 "$log" >&2; die "make olddefconfig failed (log: $log)"; }
    verify_config "$obj/.config"
    say "building vmlinux with $jobs jobs (log: $log)"
    make_ vmlinux || { tail -n 40 "$log" >&2; die "kernel build failed (log: $log)"; }
    rm -rf "$out.tmp"
    mkdir -p "$out.tmp"
    cp "$obj/vmlinux" "$out.tmp/vmlinux"
    cp "$obj/.config" "$out.tmp/config"
    sed -n 's/^VERSION = //p;s/^PATCHLEVEL = //p;s/^SUBLEVEL = //p' "$src/Makefile" \
        | paste -sd. > "$out.tmp/version"
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

main() {
    local check_only=false
    case "${1:-}" in
        --check) check_only=true ;;
        "") ;;
        *) die "usage: $0 [--check]" ;;
    esac
    [ -f "$fragment" ] || die "missing $fragment"
    check_tools
    mkdir -p "$cache_root"
    local tarball src_id key out
    tarball=$(find_source)
    if $check_only; then say "tools and source ok ($tarball)"; return; fi
    src_id=$(source_id "$tarball")
    # Comments and blank lines of the fragment do not change the kernel.
    key=$( { grep -E '^CONFIG_|^# CONFIG_.* is not set' "$fragment"; echo "recipe $recipe"; echo "$src_id"; gcc --version | head -n1; } \
        | sha256sum | cut -c1-16)
    out=$cache_root/$key
    if [ ! -f "$out/vmlinux" ]; then
        exec 9>"$cache_root/.lock"
        flock 9
        if [ ! -f "$out/vmlinux" ]; then
            local start=$SECONDS
            build "$tarball" "$src_id" "$out"
            say "built $(cat "$out/version") in $((SECONDS - start)) s"
        fi
    fi
    say "vmlinux: $(stat -c %s "$out/vmlinux") bytes"
    echo "$out/vmlinux"
}

main "$@"
