//! One arbitrary byte string as a layer: the tar reader, the OCI rules and the EROFS
//! writer must refuse or accept it without panicking or growing without bound.
#![no_main]

use hull::rootfs::{Flattener, Limits, MemorySink};
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    Limits {
        max_image_bytes: 64 << 20,
        max_inodes: 100_000,
        max_extension_bytes: 64 << 10,
        ..Limits::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut flattener = Flattener::new(MemorySink::default(), limits());
    if flattener.add_layer("sha256:fuzz", data).is_ok() {
        let _ = flattener.finish();
    }
});
