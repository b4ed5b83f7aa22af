#!/usr/bin/env bash
# Checks the lab's own plumbing with one short L1 boot: the command runs as an
# unprivileged user with rw /dev/kvm, in the caller's directory, its output streams
# back, its exit status and its $HULL_SKIP_LOG lines come back to the host.
#
#   tests/lab/selftest.sh [--mode auto|lab|direct]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

fail() { echo "FAILED lab self-test: $*"; exit 1; }
skips=$(mktemp)
out=$(mktemp)
trap 'rm -f "$skips" "$out"' EXIT

rc=0
HULL_SKIP_LOG=$skips "$here/run.sh" "$@" -- bash -c '
    echo "selftest-cwd=$PWD"
    echo "selftest-uid=$(id -u)"
    [ -r /dev/kvm ] && [ -w /dev/kvm ] && echo "selftest-kvm=rw"
    echo "selftest-skip" >> "$HULL_SKIP_LOG"
    exit 7' > "$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 7 ] || fail "exit status $rc, expected 7"
grep -qx "selftest-cwd=$PWD" "$out" || fail "command did not run in $PWD"
uid=$(sed -n 's/^selftest-uid=//p' "$out")
[ -n "$uid" ] && [ "$uid" -ne 0 ] || fail "command ran as uid '${uid}', expected an unprivileged user"
grep -qx "selftest-kvm=rw" "$out" || fail "the test user has no rw /dev/kvm"
grep -qx "selftest-skip" "$skips" || fail "HULL_SKIP_LOG lines did not come back"
echo "PASSED lab self-test (status, cwd, uid $uid, /dev/kvm rw, skip log)"
