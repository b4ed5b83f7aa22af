//! Confining the VMM without privileges: no inherited file descriptors, resource
//! limits, Landlock (no filesystem access once the VM is built) and a seccomp filter
//! per thread kind. `DESIGN.md` explains what each protects against.

pub mod fds;
pub mod landlock;
pub mod limits;
pub mod seccomp;

pub use self::landlock::{restrict_filesystem, LandlockOutcome};
pub use fds::close_inherited_fds;
pub use limits::{set_limits, Limits};
pub use seccomp::{enter_thread, ThreadKind};

use thiserror::Error;

/// Errors while confining the process.
#[derive(Debug, Error)]
pub enum ConfineError {
    /// building a seccomp filter failed
    #[error("cannot build the seccomp filter for {kind:?} threads")]
    SeccompBuild {
        /// Thread kind.
        kind: ThreadKind,
        /// Why.
        #[source]
        source: seccompiler::BackendError,
    },
    /// installing a seccomp filter failed
    #[error("cannot install the seccomp filter for {kind:?} threads")]
    SeccompApply {
        /// Thread kind.
        kind: ThreadKind,
        /// Why.
        #[source]
        source: seccompiler::Error,
    },
    /// setting a resource limit failed
    #[error("cannot set resource limit {name}")]
    Rlimit {
        /// Which limit.
        name: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// closing inherited file descriptors failed
    #[error("cannot close inherited file descriptors")]
    CloseFds(#[source] std::io::Error),
    /// Landlock refused the ruleset (distinct from "not supported", which is not an error)
    #[error("cannot apply the landlock ruleset")]
    Landlock(#[source] ::landlock::RulesetError),
}
