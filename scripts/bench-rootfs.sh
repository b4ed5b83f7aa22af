#!/usr/bin/env bash
# Benchmark: flattening image layers into an EROFS disk.
#
#   scripts/bench-rootfs.sh [ROOT_TREE] [RUNS]
#
# Splits ROOT_TREE (default: a debootstrap of Debian bookworm made under $BENCH_DIR,
# needs root and a Debian mirror) into three uncompressed tar layers (everything
# but usr/lib and usr/share; usr/lib; usr/share) and measures, RUNS times each
# (default 5), in the same run:
#   (a) hull: layers -> EROFS (examples/flatten, release build)
#   (b) tar -x of the layers into a directory, then mkfs.erofs of that directory
#   (c) tar -x of the layers alone (the floor)
# It prints median wall times, their ratios and hull's peak RSS next to the goal of
# 64 MiB + 200 bytes per file. A benchmark, not a test: it never fails on the numbers.
set -euo pipefail

BENCH_DIR=${BENCH_DIR:-/tmp/hull-bench}
ROOT_TREE=${1:-}
RUNS=${2:-5}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$BENCH_DIR"

for tool in mkfs.erofs fsck.erofs tar /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench-rootfs: missing $tool" >&2; exit 1; }
done

if [[ -z "$ROOT_TREE" ]]; then
    ROOT_TREE=$BENCH_DIR/debootstrap
    if [[ ! -e $ROOT_TREE/etc/debian_version ]]; then
        debootstrap --variant=minbase --include=python3,perl,gcc,g++,make,git,curl,vim-tiny,less \
            bookworm "$ROOT_TREE" http://deb.debian.org/debian
    fi
fi

layers=("$BENCH_DIR/layer1.tar" "$BENCH_DIR/layer2.tar" "$BENCH_DIR/layer3.tar")
if [[ ! -e ${layers[2]} || ${REBUILD_LAYERS:-0} == 1 ]]; then
    tar_opts=(--numeric-owner --xattrs --xattrs-include='*' --format=pax -C "$ROOT_TREE")
    tar "${tar_opts[@]}" --exclude=./usr/lib --exclude=./usr/share -cf "${layers[0]}" .
    tar "${tar_opts[@]}" -cf "${layers[1]}" ./usr/lib
    tar "${tar_opts[@]}" -cf "${layers[2]}" ./usr/share
fi

(cd "$REPO" && cargo build --release --example flatten --quiet)
FLATTEN=$REPO/target/release/examples/flatten

unpacked=$(du -sb --apparent-size "$ROOT_TREE" | cut -f1)
files=$(find "$ROOT_TREE" | wc -l)
echo "tree: $ROOT_TREE, $((unpacked / 1048576)) MiB apparent, $files inodes; layers: $(du -ch "${layers[@]}" | tail -1 | cut -f1)"

# (c) and the first half of (b) as standalone scripts, so /usr/bin/time sees all of it.
cat >"$BENCH_DIR/extract.sh" <<EOF
#!/bin/sh
set -e
rm -rf "$BENCH_DIR/x" && mkdir "$BENCH_DIR/x"
for l in ${layers[*]}; do tar --numeric-owner --xattrs --xattrs-include='*' -xf "\$l" -C "$BENCH_DIR/x"; done
EOF
cat >"$BENCH_DIR/extract-mkfs.sh" <<EOF
#!/bin/sh
set -e
"$BENCH_DIR/extract.sh"
mkfs.erofs --quiet --preserve-mtime "$BENCH_DIR/mkfs.erofs" "$BENCH_DIR/x"
EOF
chmod +x "$BENCH_DIR/extract.sh" "$BENCH_DIR/extract-mkfs.sh"

# Runs "$@" under /usr/bin/time; appends "seconds maxrss_kib" to the file $OUT.
timed() {
    local out=$1; shift
    /usr/bin/time -f "%e %M" -o "$BENCH_DIR/time.tmp" "$@" >/dev/null
    cat "$BENCH_DIR/time.tmp" >>"$out"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

rm -f "$BENCH_DIR"/{a,b,c}.times
for run in $(seq "$RUNS"); do
    sync
    timed "$BENCH_DIR/a.times" "$FLATTEN" "$BENCH_DIR/hull.erofs" "${layers[@]}"
    sync
    timed "$BENCH_DIR/b.times" "$BENCH_DIR/extract-mkfs.sh"
    sync
    timed "$BENCH_DIR/c.times" "$BENCH_DIR/extract.sh"
    echo "run $run done"
done
rm -rf "$BENCH_DIR/x"
fsck.erofs "$BENCH_DIR/hull.erofs" >/dev/null

a=$(cut -d' ' -f1 "$BENCH_DIR/a.times" | median)
b=$(cut -d' ' -f1 "$BENCH_DIR/b.times" | median)
c=$(cut -d' ' -f1 "$BENCH_DIR/c.times" | median)
rss=$(cut -d' ' -f2 "$BENCH_DIR/a.times" | sort -n | tail -1)
goal=$(( (64 * 1048576 + 200 * files) / 1024 ))
printf '%-34s %8s\n' "median of $RUNS runs" "seconds"
printf '%-34s %8.2f\n' "(a) hull layers -> EROFS" "$a" "(b) tar -x + mkfs.erofs" "$b" "(c) tar -x alone" "$c"
awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN { printf "a/b = %.2f (goal <= 0.5), a/c = %.2f (goal <= 1.5)\n", a / b, a / c }'
echo "hull peak RSS: $((rss / 1024)) MiB (goal < $((goal / 1024)) MiB = 64 MiB + 200 B x $files files)"
echo "image sizes: hull $(stat -c %s "$BENCH_DIR/hull.erofs") bytes, mkfs.erofs $(stat -c %s "$BENCH_DIR/mkfs.erofs") bytes"
