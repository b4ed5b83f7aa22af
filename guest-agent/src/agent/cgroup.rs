//! The container's cgroup: where its processes run and its limits apply.
//!
//! The guest's cgroup2 hierarchy is mounted at [`HIERARCHY`] for the agent. The root
//! enables every controller Docker exposes for its children, and the container's
//! processes (the main one and every `exec`) join [`CONTAINER`] and a cgroup
//! namespace rooted there, as Docker's `--cgroupns=private` does: the container sees
//! its own cgroup at `/sys/fs/cgroup` (a bind mount of [`CONTAINER`]) with its
//! limits in it, and `/proc/self/cgroup` reads `0::/`. The agent stays in the root
//! cgroup, out of the limits and out of reach of the OOM killer (it is PID 1).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use guest_agent::protocol::{valid_cpu_list, Resources, CPU_PERIOD_US};

/// Where the agent mounts the guest's cgroup2 hierarchy.
pub const HIERARCHY: &str = "/sys/fs/cgroup";
/// The container's cgroup.
pub const CONTAINER: &str = "/sys/fs/cgroup/container";

/// The controllers Docker exposes, in the order the kernel lists them.
const CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "hugetlb", "pids"];

/// Mounts the hierarchy, enables the controllers for the root's children and makes
/// the container's cgroup. A controller the kernel lacks is left out.
pub fn prepare() -> io::Result<()> {
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV;
    super::sys::mount("cgroup2", Path::new(HIERARCHY), "cgroup2", nosuid, None)?;
    let available = fs::read_to_string(format!("{HIERARCHY}/cgroup.controllers"))?;
    let subtree = format!("{HIERARCHY}/cgroup.subtree_control");
    for controller in CONTROLLERS {
        if available.split_whitespace().any(|c| c == *controller) {
            fs::write(&subtree, format!("+{controller}"))
                .map_err(|e| io::Error::new(e.kind(), format!("enabling the {controller} controller: {e}")))?;
        }
    }
    fs::create_dir(CONTAINER)
}

/// Applies the host's limits to the container's cgroup (the CPU list is checked
/// again here, against the guest's `vcpus`).
pub fn apply(resources: &Resources, vcpus: u32) -> io::Result<()> {
    let set = |file: &str, value: String| {
        fs::write(format!("{CONTAINER}/{file}"), &value)
            .map_err(|e| io::Error::new(e.kind(), format!("setting {file} to {value}: {e}")))
    };
    if let Some(bytes) = resources.memory {
        set("memory.max", bytes.to_string())?;
        // memory.swap.max exists only with swap support; there is no swap device,
        // so the limit is kept for what the container reads.
        if let Some(swap) = resources.swap {
            if Path::new(CONTAINER).join("memory.swap.max").exists() {
                set("memory.swap.max", limit(swap))?;
            }
        }
    }
    if let Some(pids) = resources.pids {
        set("pids.max", limit(pids))?;
    }
    if let Some(quota) = resources.cpu_quota {
        set("cpu.max", format!("{quota} {CPU_PERIOD_US}"))?;
    }
    if let Some(list) = &resources.cpuset {
        if !valid_cpu_list(list, vcpus) {
            let shown: String = list.chars().take(64).collect();
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid CPU list {shown:?} for {vcpus} CPUs"),
            ));
        }
        set("cpuset.cpus", list.clone())?;
    }
    Ok(())
}

fn limit(value: u64) -> String {
    match value {
        u64::MAX => "max".into(),
        n => n.to_string(),
    }
}

/// `cgroup.procs` of the container's cgroup, opened for a child to join it between
/// fork and exec (see [`join`]).
pub fn procs() -> io::Result<File> {
    OpenOptions::new().write(true).open(format!("{CONTAINER}/cgroup.procs"))
}

/// Moves the calling process into the container's cgroup, then into a cgroup
/// namespace rooted there. Async-signal-safe: for use between fork and exec.
pub fn join(procs: &File) -> io::Result<()> {
    let me = b"0";
    // SAFETY: a write of a live buffer to a descriptor this process owns.
    if unsafe { libc::write(procs.as_raw_fd(), me.as_ptr().cast(), me.len()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: unshare takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How many processes of the container the OOM killer has killed (its
/// `memory.events` `oom_kill` count).
pub fn oom_kills() -> u64 {
    let events = fs::read_to_string(format!("{CONTAINER}/memory.events")).unwrap_or_default();
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_is_written_as_max() {
        assert_eq!(limit(u64::MAX), "max");
        assert_eq!(limit(100), "100");
    }
}
