//! A seccomp filter per thread kind. Each thread installs its own filter before it
//! touches guest-controlled data; a syscall outside the list kills the process.
//!
//! Arguments are checked where they carry the danger: `ioctl` only with the request
//! numbers a thread kind uses (`KVM_RUN` on vCPU threads, `FIONBIO` on the device
//! thread), `socket` only for the non-blocking Unix stream sockets the vsock muxer
//! opens, no `mmap` or `mprotect` that asks for executable memory, and `madvise` only
//! with the advice the allocators give (plus `MADV_REMOVE` on the device thread, for
//! virtio-balloon).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

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
/// `mmap` and `mprotect` are allowed only without `PROT_EXEC` ([`MEMORY`]), `madvise`
/// only with the advice of [`allowed_advice`].
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mremap,
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

/// Mappings and protection changes, never executable: argument 2 is `prot`.
const MEMORY: &[i64] = &[libc::SYS_mmap, libc::SYS_mprotect];

/// `madvise` advice (argument 2) every thread may give: how musl's and glibc's
/// allocators hand freed memory back.
const ADVICE: &[i32] = &[libc::MADV_DONTNEED, libc::MADV_FREE];
/// The device thread may also remove pages: virtio-balloon releases guest pages of
/// the shared memory file (guest memory with virtio-fs) with `MADV_REMOVE`; private
/// guest memory it releases with `MADV_DONTNEED`.
const EVENT_LOOP_ADVICE: &[i32] = &[libc::MADV_REMOVE];

/// `_IO(KVMIO, 0x80)`: the only request a vCPU thread makes once it runs.
pub const KVM_RUN: u64 = 0xae80;

/// ioctl requests per thread kind.
const VCPU_IOCTLS: &[u64] = &[KVM_RUN];
/// `FIONBIO` on x86_64 (libc types it `c_ulong` on glibc, `c_int` on musl).
pub const FIONBIO: u64 = 0x5421;
/// `FIONBIO`: std's `set_nonblocking` on accepted vsock connections.
const EVENT_LOOP_IOCTLS: &[u64] = &[FIONBIO];

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
    libc::SYS_connect,
    libc::SYS_shutdown,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    // virtio-blk's retry timer for writes that wait for room (made before confinement).
    libc::SYS_timerfd_settime,
];

/// The only sockets the device thread opens: a guest connection to a host port
/// becomes a non-blocking Unix stream (`vsock::muxer::connect_nonblocking`).
const VSOCK_SOCKET_TYPE: i32 = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;

const MAIN: &[i64] = &[libc::SYS_rt_sigtimedwait, libc::SYS_fsync];

/// The syscalls `kind` may make, whatever their arguments, and those it may make with
/// checked arguments.
pub fn allowed_syscalls(kind: ThreadKind) -> Vec<i64> {
    let extra = match kind {
        ThreadKind::Vcpu => &[][..],
        ThreadKind::EventLoop => EVENT_LOOP,
        ThreadKind::Main => MAIN,
    };
    COMMON.iter().chain(extra).copied().collect()
}

/// The `madvise` advice `kind` may give.
pub fn allowed_advice(kind: ThreadKind) -> Vec<i32> {
    let extra = match kind {
        ThreadKind::EventLoop => EVENT_LOOP_ADVICE,
        ThreadKind::Vcpu | ThreadKind::Main => &[][..],
    };
    ADVICE.iter().chain(extra).copied().collect()
}

/// The ioctl requests `kind` may make.
pub fn allowed_ioctls(kind: ThreadKind) -> &'static [u64] {
    match kind {
        ThreadKind::Vcpu => VCPU_IOCTLS,
        ThreadKind::EventLoop => EVENT_LOOP_IOCTLS,
        ThreadKind::Main => &[],
    }
}

fn condition(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
}

/// One rule per allowed request number (argument 1).
fn ioctl_rules(requests: &[u64]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    requests
        .iter()
        .map(|&request| SeccompRule::new(vec![condition(1, SeccompCmpOp::Eq, request)?]))
        .collect()
}

/// One rule per allowed `madvise` advice (argument 2).
fn madvise_rules(advice: &[i32]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    advice
        .iter()
        .map(|&advice| SeccompRule::new(vec![condition(2, SeccompCmpOp::Eq, advice as u64)?]))
        .collect()
}

/// `prot` (argument 2) without `PROT_EXEC`.
fn no_exec_rule() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let no_exec = condition(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)?;
    Ok(vec![SeccompRule::new(vec![no_exec])?])
}

/// `socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, _)`.
fn vsock_socket_rule() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let domain = condition(0, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?;
    let kind = condition(1, SeccompCmpOp::Eq, VSOCK_SOCKET_TYPE as u64)?;
    Ok(vec![SeccompRule::new(vec![domain, kind])?])
}

fn rules(kind: ThreadKind) -> Result<BTreeMap<i64, Vec<SeccompRule>>, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed_syscalls(kind).into_iter().map(|nr| (nr, Vec::new())).collect();
    for &nr in MEMORY {
        rules.insert(nr, no_exec_rule()?);
    }
    rules.insert(libc::SYS_madvise, madvise_rules(&allowed_advice(kind))?);
    let ioctls = allowed_ioctls(kind);
    if !ioctls.is_empty() {
        rules.insert(libc::SYS_ioctl, ioctl_rules(ioctls)?);
    }
    if kind == ThreadKind::EventLoop {
        rules.insert(libc::SYS_socket, vsock_socket_rule()?);
    }
    Ok(rules)
}

/// Compiles the filter of `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, ConfineError> {
    let build = |source| ConfineError::SeccompBuild { kind, source };
    let filter = SeccompFilter::new(
        rules(kind).map_err(build)?,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(build)?;
    filter.try_into().map_err(build)
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
            libc::SYS_ioctl,
        ] {
            assert!(!allowed.contains(&nr), "{nr}: allowed with any arguments");
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

    /// Runs `call` in a child process confined as `kind`: whether the filter killed it
    /// (SIGSYS), or the child got past the call.
    fn killed_by_filter(kind: ThreadKind, call: fn()) -> bool {
        // SAFETY: fork in a test; the child only installs a filter and makes syscalls.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if enter_thread(kind, true).is_err() {
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(2) };
            }
            call();
            // SAFETY: _exit is always safe; reached only if the filter let the call by.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFEXITED(status) {
            assert_eq!(libc::WEXITSTATUS(status), 0, "the filter could not be installed");
            return false;
        }
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS
    }

    #[test]
    fn filtered_thread_is_killed_on_a_forbidden_syscall() {
        // SAFETY: getppid has no arguments; it is not on the vCPU list.
        assert!(killed_by_filter(ThreadKind::Vcpu, || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }));
    }

    #[test]
    fn fionbio_is_the_request_libc_knows() {
        assert_eq!(FIONBIO, libc::FIONBIO);
    }

    #[test]
    fn ioctls_are_checked_by_request_number() {
        // SAFETY: ioctls on stdin with a null argument; the filter decides before the
        // kernel looks at it.
        let tcgets = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::ioctl(0, libc::TCGETS, 0) };
        };
        let kvm_run = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::ioctl(-1, KVM_RUN as _, 0) };
        };
        let fionbio = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::ioctl(-1, FIONBIO as _, 0) };
        };
        assert!(killed_by_filter(ThreadKind::Vcpu, tcgets));
        assert!(!killed_by_filter(ThreadKind::Vcpu, kvm_run));
        assert!(killed_by_filter(ThreadKind::Vcpu, fionbio));
        assert!(!killed_by_filter(ThreadKind::EventLoop, fionbio));
        assert!(killed_by_filter(ThreadKind::EventLoop, kvm_run));
        assert!(killed_by_filter(ThreadKind::Main, fionbio));
    }

    /// An anonymous mapping with `prot`, left to the child's end.
    fn map_anonymous(prot: i32) {
        // SAFETY: an anonymous private mapping; the filter decides before the kernel maps.
        unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
    }

    #[test]
    fn no_thread_may_map_executable_memory() {
        let map_exec = || map_anonymous(libc::PROT_READ | libc::PROT_EXEC);
        let map_data = || map_anonymous(libc::PROT_READ | libc::PROT_WRITE);
        let protect_exec = || {
            let mut page = vec![0u8; 8192];
            let aligned = ((page.as_mut_ptr() as usize + 4095) & !4095) as *mut libc::c_void;
            // SAFETY: a page inside our own buffer; the filter decides first.
            unsafe { libc::mprotect(aligned, 4096, libc::PROT_READ | libc::PROT_EXEC) };
        };
        for kind in [ThreadKind::Vcpu, ThreadKind::EventLoop, ThreadKind::Main] {
            assert!(killed_by_filter(kind, map_exec), "{kind:?} mmap exec");
            assert!(killed_by_filter(kind, protect_exec), "{kind:?} mprotect exec");
            assert!(!killed_by_filter(kind, map_data), "{kind:?} mmap data");
        }
    }

    #[test]
    fn madvise_is_checked_by_advice() {
        // SAFETY: madvise of an empty range at address 0 changes nothing; the filter
        // decides before the kernel looks at the range.
        let dontneed = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::madvise(std::ptr::null_mut(), 0, libc::MADV_DONTNEED) };
        };
        let free = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::madvise(std::ptr::null_mut(), 0, libc::MADV_FREE) };
        };
        let remove = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::madvise(std::ptr::null_mut(), 0, libc::MADV_REMOVE) };
        };
        let hugepage = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::madvise(std::ptr::null_mut(), 0, libc::MADV_HUGEPAGE) };
        };
        let dontfork = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::madvise(std::ptr::null_mut(), 0, libc::MADV_DONTFORK) };
        };
        for kind in [ThreadKind::Vcpu, ThreadKind::EventLoop, ThreadKind::Main] {
            assert!(!killed_by_filter(kind, dontneed), "{kind:?} MADV_DONTNEED");
            assert!(!killed_by_filter(kind, free), "{kind:?} MADV_FREE");
            assert_eq!(
                killed_by_filter(kind, remove),
                kind != ThreadKind::EventLoop,
                "{kind:?} MADV_REMOVE"
            );
            assert!(killed_by_filter(kind, hugepage), "{kind:?} MADV_HUGEPAGE");
            assert!(killed_by_filter(kind, dontfork), "{kind:?} MADV_DONTFORK");
        }
    }

    #[test]
    fn madvise_is_allowed_only_with_the_listed_advice() {
        for kind in [ThreadKind::Vcpu, ThreadKind::EventLoop, ThreadKind::Main] {
            assert!(!allowed_syscalls(kind).contains(&libc::SYS_madvise), "{kind:?}");
        }
        assert_eq!(
            allowed_advice(ThreadKind::EventLoop),
            [libc::MADV_DONTNEED, libc::MADV_FREE, libc::MADV_REMOVE]
        );
        assert_eq!(allowed_advice(ThreadKind::Vcpu), [libc::MADV_DONTNEED, libc::MADV_FREE]);
    }

    #[test]
    fn the_device_thread_opens_only_unix_stream_sockets() {
        // SAFETY: socket(2) calls whose results are dropped (the child exits).
        let unix = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::socket(libc::AF_UNIX, VSOCK_SOCKET_TYPE, 0) };
        };
        let inet = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::socket(libc::AF_INET, VSOCK_SOCKET_TYPE, 0) };
        };
        let unix_dgram = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0) };
        };
        let netlink = || {
            // SAFETY: as above; the call runs in the forked child under test and its result is dropped.
            unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, 0) };
        };
        assert!(!killed_by_filter(ThreadKind::EventLoop, unix));
        assert!(killed_by_filter(ThreadKind::EventLoop, inet));
        assert!(killed_by_filter(ThreadKind::EventLoop, unix_dgram));
        assert!(killed_by_filter(ThreadKind::EventLoop, netlink));
        assert!(killed_by_filter(ThreadKind::Vcpu, unix));
    }
}
