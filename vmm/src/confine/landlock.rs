//! Landlock: once every file the VM needs is open, the VMM gives up all filesystem
//! access (reads, writes, creating, removing, executing) and, where the kernel has
//! Landlock ABI 4 (Linux 6.7), binding and connecting TCP sockets. Connecting to the
//! vsock Unix sockets is not an access Landlock controls, so it keeps working.

use ::landlock::{Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, ABI};

use super::ConfineError;

/// What the kernel enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandlockOutcome {
    /// All filesystem access and TCP bind/connect are denied.
    Enforced,
    /// Only part of the rights could be denied (an older Landlock ABI: before 4, TCP
    /// is not restricted).
    Partial,
    /// The kernel has no Landlock.
    Unsupported,
}

/// Denies the calling thread, and threads it creates later, all filesystem access and
/// TCP bind and connect.
pub fn restrict_filesystem() -> Result<LandlockOutcome, ConfineError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI::V5))
        .and_then(|r| r.handle_access(AccessNet::from_all(ABI::V5)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(ConfineError::Landlock)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockOutcome::Enforced,
        RulesetStatus::PartiallyEnforced => LandlockOutcome::Partial,
        _ => LandlockOutcome::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` in a child after `restrict_filesystem`; the child's exit code:
    /// 0 denied, 1 allowed, 3 Landlock (or its TCP part) missing on this kernel.
    fn in_restricted_child(check: fn() -> bool) -> i32 {
        // SAFETY: fork in a test; the child only restricts itself and makes syscalls.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match restrict_filesystem() {
                Ok(LandlockOutcome::Enforced) if check() => 0,
                Ok(LandlockOutcome::Enforced) => 1,
                _ => 3,
            };
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status}");
        libc::WEXITSTATUS(status)
    }

    fn denied(e: std::io::Error) -> bool {
        e.kind() == std::io::ErrorKind::PermissionDenied
    }

    #[test]
    fn a_restricted_vmm_opens_no_file_and_makes_no_tcp_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // The child reads the port from the environment of its fork.
        // SAFETY: set before fork, in this test's own process (nextest runs each test
        // in its own process).
        unsafe { std::env::set_var("LANDLOCK_TEST_PORT", listener.local_addr().unwrap().port().to_string()) };
        let opens = in_restricted_child(|| std::fs::File::open("/etc/hostname").is_err_and(denied));
        let connects = in_restricted_child(|| {
            let port: u16 = std::env::var("LANDLOCK_TEST_PORT").unwrap().parse().unwrap();
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err_and(denied)
        });
        let binds = in_restricted_child(|| std::net::TcpListener::bind("127.0.0.1:0").is_err_and(denied));
        if [opens, connects, binds].contains(&3) {
            println!("landlock or its TCP rules (ABI 4) are not in this kernel: {opens} {connects} {binds}");
            return;
        }
        assert_eq!((opens, connects, binds), (0, 0, 0));
    }
}
