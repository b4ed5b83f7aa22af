//! The image side of hull: references, digests, the OCI-layout store, registry pulls
//! and archive load/save.

pub mod archive;
pub mod auth;
pub mod build;
pub mod digest;
pub mod dockerfile;
pub mod login;
pub mod manifest;
pub mod push;
pub mod reference;
pub mod registry;
pub mod store;

pub use digest::{Digest, DigestError};
pub use reference::{Reference, ReferenceError};
