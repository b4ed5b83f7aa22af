//! Landlock: once every file the VM needs is open, the VMM gives up all filesystem
//! access (reads, writes, creating, removing, executing). Connecting to the vsock
//! Unix sockets is not a filesystem access Landlock controls, so it keeps working.

use ::landlock::{Access, AccessFs, Ruleset, RulesetAttr, RulesetStatus, ABI};

use super::ConfineError;

/// What the kernel enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandlockOutcome {
    /// All filesystem access is denied.
    Enforced,
    /// Only part of the rights could be denied (older Landlock ABI).
    Partial,
    /// The kernel has no Landlock.
    Unsupported,
}

/// Denies the calling thread, and threads it creates later, all filesystem access.
pub fn restrict_filesystem() -> Result<LandlockOutcome, ConfineError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI::V5))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self())
        .map_err(ConfineError::Landlock)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockOutcome::Enforced,
        RulesetStatus::PartiallyEnforced => LandlockOutcome::Partial,
        _ => LandlockOutcome::Unsupported,
    })
}
