//! A seccomp filter per thread kind. Each thread installs its own filter before it
//! touches guest-controlled data; a syscall outside the list kills the process.

use std::collections::BTreeMap;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use super::ConfineError;

/// Kinds of VMM threads, each with its own allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// Runs `KVM_RUN` and the port-I/O and MMIO handlers.
    Vcpu,
    /// Runs device workers: disk I/O, vsock sockets, entropy.
    EventLoop,
    /// Waits for the stop reason and for signals, then exits.
    Main,
}

/// Syscalls every thread needs: memory, locks, time, signals, logging, exit.
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_read,
    libc::SYS_close,
    // Descriptor flags; also what std checks when dropping an owned fd.
    libc::SYS_fcntl,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

const VCPU: &[i64] = &[libc::SYS_ioctl];

const EVENT_LOOP: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_getrandom,
    libc::SYS_accept4,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_ioctl,
];

const MAIN: &[i64] = &[libc::SYS_rt_sigtimedwait, libc::SYS_fsync];

/// The allow-list of `kind`.
pub fn allowed_syscalls(kind: ThreadKind) -> Vec<i64> {
    let extra = match kind {
        ThreadKind::Vcpu => VCPU,
        ThreadKind::EventLoop => EVENT_LOOP,
        ThreadKind::Main => MAIN,
    };
    COMMON.iter().chain(extra).copied().collect()
}

/// Compiles the filter of `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, ConfineError> {
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> =
        allowed_syscalls(kind).into_iter().map(|nr| (nr, Vec::new())).collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|source| ConfineError::SeccompBuild { kind, source })?;
    filter
        .try_into()
        .map_err(|source| ConfineError::SeccompBuild { kind, source })
}

/// Installs the filter of `kind` on the calling thread (when `enabled`).
pub fn enter_thread(kind: ThreadKind, enabled: bool) -> Result<(), ConfineError> {
    if !enabled {
        return Ok(());
    }
    let program = filter(kind)?;
    seccompiler::apply_filter(&program).map_err(|source| ConfineError::SeccompApply { kind, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_kind_compiles_to_a_filter() {
        for kind in [ThreadKind::Vcpu, ThreadKind::EventLoop, ThreadKind::Main] {
            assert!(!filter(kind).unwrap().is_empty());
        }
    }

    #[test]
    fn vcpu_threads_may_not_open_files_or_sockets() {
        let allowed = allowed_syscalls(ThreadKind::Vcpu);
        for nr in [
            libc::SYS_openat,
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_execve,
            libc::SYS_clone,
        ] {
            assert!(!allowed.contains(&nr), "{nr}");
        }
    }

    #[test]
    fn no_thread_may_exec_or_open_files() {
        for kind in [ThreadKind::Vcpu, ThreadKind::EventLoop, ThreadKind::Main] {
            let allowed = allowed_syscalls(kind);
            for nr in [libc::SYS_execve, libc::SYS_openat, libc::SYS_open, libc::SYS_ptrace] {
                assert!(!allowed.contains(&nr), "{kind:?} {nr}");
            }
        }
    }

    #[test]
    fn filtered_thread_is_killed_on_a_forbidden_syscall() {
        // Run in a child process: the filter kills the whole process.
        // SAFETY: fork in a test; the child only installs a filter and makes syscalls.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = enter_thread(ThreadKind::Vcpu, true);
            // SAFETY: getppid has no arguments; it is not on the vCPU list.
            unsafe { libc::syscall(libc::SYS_getppid) };
            // SAFETY: _exit is always safe; reached only if the filter failed.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFSIGNALED(status), "child exited normally: filter not enforced");
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
