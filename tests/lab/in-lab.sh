#!/usr/bin/env bash
# The lab suite's inner half, run by tests/lab/run.sh as the unprivileged test user
# where /dev/kvm boots Linux: runs each prebuilt test binary, then the guest boot test,
# and prints one summary.  Built by tests/lab/suite.sh; not meant to be called by hand.
#
#   tests/lab/in-lab.sh ARTIFACT_DIR [TEST_BINARY...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
art=${1:?usage: in-lab.sh ARTIFACT_DIR [TEST_BINARY...]}
shift

passed=() failed=()
run_suite() {
    local label=$1; shift
    echo "=== lab suite: $label"
    local start=$SECONDS
    if "$@"; then passed+=("$label"); else failed+=("$label (exit $?)"); fi
    echo "=== $label: $((SECONDS - start)) s"
}

echo "lab: $(uname -r), $(nproc) CPUs, /dev/kvm: $( [ -e /dev/kvm ] && echo present || echo absent ), uid $(id -u)"
for bin in "$@"; do
    run_suite "$(basename "$bin")" "$bin" --include-ignored --test-threads=1
done
run_suite guest-boot "$here/boot-test.sh" "$art/vmlinux" "$art/guest-initramfs.cpio.gz" \
    "$art/probe.erofs" "$(cat "$art/probe.txt")"

echo "=== lab summary: ${#passed[@]} passed, ${#failed[@]} failed"
for f in "${failed[@]}"; do echo "  FAILED $f"; done
[ ${#failed[@]} -eq 0 ]
