#![no_main]
//! Manifests and indexes as a registry or archive may send them.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hull::image::manifest::parse(data, None);
    let _ = hull::image::manifest::parse(data, Some("application/vnd.oci.image.index.v1+json"));
});
