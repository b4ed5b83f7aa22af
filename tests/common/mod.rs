//! Support shared by hull's integration tests: real registries started and stopped by
//! the test, test images built from the host's busybox, a runner for the `hull`
//! binary with its own store, and checks of the store's consistency.
//!
//! Every integration test file pulls this in with `mod common;` and uses a part of it.
//!
//! What the image tests need on the host (all in `scripts/apt-packages.txt`):
//! `docker-registry` (Debian's distribution 2.8), `skopeo`, `htpasswd`
//! (apache2-utils), `/bin/busybox` (busybox-static), `zstd`, `curl`, and Debian's
//! `/usr/bin/python3` with `python3-jwt` and `python3-cryptography` for the token
//! server. Nothing needs root: each test makes its own temp store, registries on
//! 127.0.0.1 (and 127.0.0.2) with ephemeral ports, and stops them when it ends.
//!
//! Layout:
//! - `registry`: docker-registry, anonymous, htpasswd basic auth, or bearer tokens
//!   from `tests/fixtures/token_server.py`; its access log counts blob downloads.
//! - `fake`: `tests/fixtures/fake_registry.py`, serving crafted bytes (corrupt blobs,
//!   odd manifests), stalling a download, or redirecting blobs to another host.
//! - `fixtures`: the OCI layouts `tests/fixtures/mkimage.py` builds, with the facts
//!   (digests, diff_ids, platforms) tests compare hull's output with.
//! - `hull`: the binary with its own `HULL_ROOT`, `HOME` and `DOCKER_CONFIG`.
//! - `store`: the store read from outside (blobs, index.json, skopeo).
//! - `e2e`: the store and image of the tests that boot micro-VMs, and runners on it.
#![allow(dead_code)]

pub mod e2e;
pub mod fake;
pub mod fixtures;
pub mod hull;
pub mod process;
pub mod registry;
pub mod store;
