#!/usr/bin/env bash
# Pull benchmark: hull pull against skopeo copy, same image, same local registry, same run.
#
#   scripts/bench-pull.sh [--size-mb N] [--layers N] [--runs N]
#
# Builds a multi-layer image of mostly incompressible data (default 256 MB in 4 layers),
# pushes it to a docker-registry started on 127.0.0.1 for the run, then times
# `hull pull` (fresh HULL_ROOT each run) and `skopeo copy docker://... oci:DIR` (fresh
# DIR each run), alternating, and prints median wall time and peak RSS of each.
# HULL=/path/to/hull picks the binary; otherwise target/release/hull is built.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb=256
layers=4
runs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mb) size_mb=$2; shift 2 ;;
        --layers) layers=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "usage: $0 [--size-mb N] [--layers N] [--runs N]" >&2; exit 2 ;;
    esac
done

for tool in docker-registry skopeo /usr/bin/time /usr/bin/python3; do
    command -v "$tool" >/dev/null || { echo "bench-pull: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

if [ -z "${HULL:-}" ]; then
    cargo build --release --quiet --bin hull
    HULL="$PWD/target/release/hull"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/hull-bench.XXXXXX")
registry_pid=""
cleanup() {
    if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "bench-pull: building a ${size_mb} MB image in ${layers} layers"
/usr/bin/python3 tests/fixtures/mkimage.py "$work/layout" bench large \
    --size-mb "$size_mb" --layers "$layers" > "$work/summary.json"

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
  secret: hull-bench
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
ref="127.0.0.1:$port/bench/large:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:bench" "docker://$ref"
compressed=$(/usr/bin/python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["layer_sizes"]) // 1048576)' "$work/summary.json")
echo "bench-pull: pushed $ref ($compressed MiB compressed); $runs runs each"

# run NAME CMD...: one timed run, appends "seconds kib" to $work/NAME.times
run() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null 2>"$work/$name.err" || {
        echo "bench-pull: $name failed:" >&2; cat "$work/$name.err" >&2; exit 1; }
    cat "$work/time.out" >> "$work/$name.times"
}

for i in $(seq "$runs"); do
    rm -rf "$work/hull-root" "$work/skopeo-oci"
    sync
    HULL_ROOT="$work/hull-root" run hull "$HULL" pull -q "$ref"
    rm -rf "$work/hull-root"
    sync
    run skopeo skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/skopeo-oci:bench"
    rm -rf "$work/skopeo-oci"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '\n%-8s %14s %14s %16s\n' tool "median wall s" "min-max s" "median peak MiB"
for name in hull skopeo; do
    wall=$(cut -d' ' -f1 "$work/$name.times" | median)
    range=$(cut -d' ' -f1 "$work/$name.times" | sort -n | sed -n '1p;$p' | paste -sd-)
    rss=$(cut -d' ' -f2 "$work/$name.times" | median)
    printf '%-8s %14s %14s %16.1f\n' "$name" "$wall" "$range" "$(echo "$rss / 1024" | bc -l)"
done
hw=$(cut -d' ' -f1 "$work/hull.times" | median)
sw=$(cut -d' ' -f1 "$work/skopeo.times" | median)
printf '\nhull/skopeo wall time: %.2fx (goal <= 1.0x); image %s MB in %s layers, %s MiB compressed\n' \
    "$(echo "$hw / $sw" | bc -l)" "$size_mb" "$layers" "$compressed"
