//! Real programs see what a distribution kernel and Docker's overlay2 give them:
//! the system calls a `tinyconfig` kernel drops, consistent inode numbers, renames
//! of the image's directories, hard links across layers, cgroup2 with Docker's
//! controllers and limits, `/dev/shm`'s size, and OOM kills reported as Docker does.
//!
//! Lab tests (`#[ignore]`d on the host), run by `tests/lab/suite.sh` with the same
//! busybox fixture as `container_e2e`. The system calls are tried by
//! `hull-syscall-probe` (built beside the agent, copied into the container).

use std::path::Path;

mod common;

use common::e2e::*;

fn probe_path() -> String {
    let agent = std::env::var_os("HULL_AGENT").expect("the lab suite sets HULL_AGENT");
    Path::new(&agent)
        .with_file_name("hull-syscall-probe")
        .to_string_lossy()
        .into_owned()
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn system_calls_and_overlay_features_that_programs_use_work() {
    let _ = LAB;
    // An image of our own with a directory and a hard-linked pair in its top layer.
    ok(&[
        "run",
        "--name",
        "fid-base",
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /d/sub && echo one > /d/sub/f && echo a > /l1 && ln /l1 /l2",
    ]);
    ok(&["commit", "fid-base", "fidelity:base"]);
    ok(&["rm", "fid-base"]);

    ok(&["run", "-d", "--name", "fid", "fidelity:base", "sleep", "600"]);
    ok(&["cp", &probe_path(), "fid:/probe"]);
    ok(&["exec", "fid", "mkdir", "/work"]);
    let out = hull(&["exec", "fid", "/probe", "/work", "/d", "/e"]);
    let report = text(&out.stdout);
    assert_eq!(code(&out), 0, "{report}{}", text(&out.stderr));
    assert_eq!(report.lines().filter(|l| l.ends_with(" ok")).count(), 20, "{report}");

    // The kernel's config is readable, the root is overlay2-like.
    let config = ok(&[
        "exec",
        "fid",
        "sh",
        "-c",
        "zcat /proc/config.gz | grep -E '^CONFIG_(ADVISE_SYSCALLS|IO_URING|NF_TABLES)='",
    ]);
    assert_eq!(config.lines().count(), 3, "{config}");
    let mounts = ok(&["exec", "fid", "cat", "/proc/self/mountinfo"]);
    let root = mounts.lines().find(|l| l.contains(" / / ")).unwrap_or_default();
    for option in ["xino=on", "redirect_dir=on", "index=on"] {
        assert!(root.contains(option), "{option} missing: {root}");
    }

    // A hard link of the image stays one file when written through either name.
    let linked = ok(&["exec", "fid", "sh", "-c", "echo b >> /l1; cat /l2; stat -c %h /l2"]);
    assert_eq!(linked, "a\nb\n2\n");

    // The renamed directory: diff shows it, commit keeps it whole, the old name goes.
    ok(&["exec", "fid", "sh", "-c", "echo two > /e/new"]);
    ok(&["stop", "-t", "1", "fid"]);
    let diff = ok(&["diff", "fid"]);
    for line in ["D /d", "A /e", "A /e/new", "A /e/sub", "A /e/sub/f"] {
        assert!(diff.lines().any(|l| l == line), "{line} missing:\n{diff}");
    }
    ok(&["commit", "fid", "fidelity:renamed"]);
    let seen = ok(&[
        "run",
        "--rm",
        "fidelity:renamed",
        "sh",
        "-c",
        "cat /e/sub/f /e/new; ls -d /d 2>&1 || true",
    ]);
    assert!(seen.starts_with("one\ntwo\n"), "{seen}");
    assert!(seen.contains("No such file"), "{seen}");
    ok(&["rm", "fid"]);
    ok(&["rmi", "fidelity:renamed", "fidelity:base"]);
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn the_container_has_its_own_cgroup_with_docker_limits_and_shm_size() {
    let script = "cat /proc/self/cgroup /sys/fs/cgroup/cgroup.controllers \
                  /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max; \
                  df -k /dev/shm | tail -1";
    let out = ok(&["run", "--rm", IMAGE, "sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0::/", "{out}");
    for controller in ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"] {
        assert!(lines[1].split(' ').any(|c| c == controller), "{controller}: {out}");
    }
    assert_eq!(&lines[2..5], ["max", "max", "max 100000"], "{out}");
    assert!(
        lines[5].split_whitespace().nth(1) == Some("65536"),
        "64 MiB of /dev/shm: {out}"
    );

    let out = ok(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--shm-size",
        "128m",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[2..5], ["67108864", "50", "50000 100000"], "{out}");
    assert!(lines[5].split_whitespace().nth(1) == Some("131072"), "{out}");

    // The process limit holds: the 50th process cannot be forked.
    let out = hull(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait",
    ]);
    assert!(
        text(&out.stderr).contains("can't fork") || text(&out.stderr).contains("Resource"),
        "{}",
        text(&out.stderr)
    );

    ok(&[
        "create",
        "--name",
        "fid-shown",
        "-m",
        "100m",
        "--memory-swap",
        "-1",
        "--pids-limit",
        "7",
        IMAGE,
        "true",
    ]);
    let c = inspect("fid-shown");
    assert_eq!(c["HostConfig"]["Memory"], 100 << 20);
    assert_eq!(c["HostConfig"]["MemorySwap"], -1);
    assert_eq!(c["HostConfig"]["PidsLimit"], 7);
    assert_eq!(c["HostConfig"]["ShmSize"], 64 << 20);
    assert_eq!(
        c["Hull"]["VM"]["Memory"],
        (100 + 64 + 2) << 20,
        "the limit plus room for the guest kernel"
    );
    ok(&["rm", "fid-shown"]);
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn a_container_over_its_memory_limit_is_oom_killed_and_reported_as_docker_does() {
    // busybox dd allocates its block whole and fills it: 48 MiB in a 32 MiB limit (a
    // block larger than the VM's 97 MiB would fail in malloc instead).
    let out = hull(&[
        "run",
        "--name",
        "fid-oom",
        "-m",
        "32m",
        IMAGE,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=48M",
        "count=1",
    ]);
    assert_eq!(code(&out), 137, "{}", text(&out.stderr));
    let state = &inspect("fid-oom")["State"];
    assert_eq!(state["OOMKilled"], true, "{state}");
    assert_eq!(state["ExitCode"], 137);
    // The guest survived its OOM kill: the same container starts again, and a run
    // within the limit is not marked.
    ok(&["start", "fid-oom"]);
    ok(&["wait", "fid-oom"]);
    ok(&["rm", "fid-oom"]);
    ok(&[
        "run",
        "--name",
        "fid-fits",
        "-m",
        "64m",
        IMAGE,
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=8M",
        "count=1",
    ]);
    assert_eq!(inspect("fid-fits")["State"]["OOMKilled"], false);
    ok(&["rm", "fid-fits"]);
}
