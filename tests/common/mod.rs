//! Support shared by hull's integration tests: real registries started and stopped by
//! the test, test images built from the host's busybox, a runner for the `hull`
//! binary with its own store, and checks of the store's consistency.
//!
//! Every integration test file pulls this in with `mod common;` and uses a part of it.
#![allow(dead_code)]

pub mod fake;
pub mod fixtures;
pub mod hull;
pub mod process;
pub mod registry;
pub mod store;
