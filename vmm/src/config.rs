//! The VMM's configuration: one typed definition with hull, in the `vmm-config` crate,
//! which also reads and writes its command-line form.

pub use vmm_config::*;
