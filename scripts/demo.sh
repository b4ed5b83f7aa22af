#!/usr/bin/env bash
# hull's main job on a fresh machine, offline: build a busybox image locally, serve it
# from a local registry, pull it into a private store and show it; then save it, load
# it as an unprivileged user and run a container from it in its own micro-VM. Where
# this host's /dev/kvm cannot boot Linux (a nested or paravirtual KVM), the container
# runs inside the lab VM of tests/lab/run.sh, as its unprivileged test user.
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

# Run it. The archive goes where the (unprivileged) runner can read it.
mkdir -p .lab/demo
"$hull" save -o .lab/demo/busybox.tar "127.0.0.1:$port/busybox"
if [ -z "${HULL_KERNEL:-}" ]; then
    cp "$(kernel-config/build.sh)" .lab/demo/vmlinux
    export HULL_KERNEL=$PWD/.lab/demo/vmlinux
fi
chmod -R a+rX .lab
cat > .lab/demo/run.sh <<'RUN'
#!/bin/bash
set -euo pipefail
export HULL_ROOT=$(mktemp -d)/store
hull=$1
echo "+ hull load -i busybox.tar"
"$hull" load -i .lab/demo/busybox.tar
echo "+ hull run --rm $2 echo hello from a hull micro-VM"
"$hull" run --rm "$2" echo "hello from a hull micro-VM"
RUN
chmod a+rx .lab/demo/run.sh
HULL_BOOT_TIMEOUT=${HULL_BOOT_TIMEOUT:-300} tests/lab/run.sh --timeout 900 -- \
    .lab/demo/run.sh "$(cd "$(dirname "$hull")" && pwd)/$(basename "$hull")" "127.0.0.1:$port/busybox"
