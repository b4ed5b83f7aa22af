#!/usr/bin/env bash
# hull's main job on a fresh machine, offline: build a busybox image locally, serve it
# from a local registry, pull it into a private store and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
hull=${HULL:-./target/release/hull}
work=$(mktemp -d)
registry_pid=""
cleanup() {
    [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done

/usr/bin/python3 scripts/busybox-image.py "$work/layout" latest
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://127.0.0.1:$port/busybox:latest"

export HULL_ROOT=${HULL_ROOT:-$work/store}
echo "+ hull pull 127.0.0.1:$port/busybox"
"$hull" pull "127.0.0.1:$port/busybox"
echo "+ hull images"
"$hull" images
echo "+ hull image history 127.0.0.1:$port/busybox"
"$hull" image history "127.0.0.1:$port/busybox"
