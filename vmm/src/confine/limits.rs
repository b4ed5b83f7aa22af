//! Resource limits: the number of descriptors and the largest file the VMM may write.

use std::io;

use super::ConfineError;

/// Limits applied once the VM is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_NOFILE (soft and hard).
    pub nofile: u64,
    /// RLIMIT_FSIZE (soft and hard), bytes.
    pub fsize: u64,
}

/// setrlimit's resource argument: glibc gives it its own type, musl a plain int.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn set(resource: Resource, name: &'static str, value: u64) -> Result<(), ConfineError> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit struct.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(ConfineError::Rlimit {
            name,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Lowers the limits (they can never be raised again without privileges).
pub fn set_limits(limits: Limits) -> Result<(), ConfineError> {
    set(libc::RLIMIT_NOFILE, "RLIMIT_NOFILE", limits.nofile)?;
    set(libc::RLIMIT_FSIZE, "RLIMIT_FSIZE", limits.fsize)
}
