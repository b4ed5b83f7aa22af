//! x86_64 boot: kernel loading (PVH or the 64-bit Linux boot protocol), CPUID, MSRs,
//! registers and the MP table.

pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod regs;

pub use boot::{load_kernel, BootEntry, BootError, BootProtocol};
