#!/usr/bin/env bash
# Push benchmark: hull push against skopeo copy, same image, same local registry, same run.
#
#   scripts/bench-push.sh [--size-mb N] [--layers N] [--runs N]
#
# Builds a multi-layer image of mostly incompressible data (default 256 MB in 4 layers),
# loads it into a hull store, starts a docker-registry on 127.0.0.1 for the run, then
# times `hull push` and `skopeo copy oci:DIR docker://...` of the same layout,
# alternating, each run to a repository of its own (nothing already there, nothing to
# mount: hull's earlier tags are removed, skopeo gets a fresh blob-info cache), and
# prints median wall time and peak RSS (/usr/bin/time) of each.
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

for tool in docker-registry skopeo /usr/bin/time /usr/bin/python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench-push: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
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

echo "bench-push: building a ${size_mb} MB image in ${layers} layers"
/usr/bin/python3 tests/fixtures/mkimage.py "$work/layout" bench large \
    --size-mb "$size_mb" --layers "$layers" > "$work/summary.json"
tar -C "$work/layout" -cf "$work/image.tar" .
export HULL_ROOT="$work/hull-root"
"$HULL" load -q -i "$work/image.tar" >/dev/null

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
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
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
host="127.0.0.1:$port"
compressed=$(/usr/bin/python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["layer_sizes"]) // 1048576)' "$work/summary.json")
echo "bench-push: pushing to $host ($compressed MiB compressed); $runs runs each"

# run NAME CMD...: one timed run, appends "seconds kib" to $work/NAME.times
run() {
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null 2>"$work/$name.err" || {
        echo "bench-push: $name failed:" >&2; cat "$work/$name.err" >&2; exit 1; }
    cat "$work/time.out" >> "$work/$name.times"
}

for i in $(seq "$runs"); do
    target="$host/bench/hull-$i:latest"
    "$HULL" tag bench "$target"
    sync
    run hull "$HULL" push -q "$target"
    "$HULL" rmi "$target" >/dev/null
    sync
    mkdir -p "$work/skopeo-home-$i"
    HOME="$work/skopeo-home-$i" run skopeo skopeo copy --quiet --dest-tls-verify=false \
        "oci:$work/layout:bench" "docker://$host/bench/skopeo-$i:latest"
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
