//! Architecture-specific boot steps. Only x86_64 exists today; aarch64 would add a
//! sibling module with the same entry points.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use self::x86_64::*;
