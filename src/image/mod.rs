//! The image side of hull: references, digests, the OCI-layout store, registry pulls
//! and archive load/save.

pub mod digest;
pub mod reference;

pub use digest::{Digest, DigestError};
pub use reference::{Reference, ReferenceError};
