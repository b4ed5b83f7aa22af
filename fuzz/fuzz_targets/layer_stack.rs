//! Several layers cut from one input at 0xFF 0x00 0xFF 0x00 separators, so whiteouts,
//! opaque markers and hard links meet what earlier layers left.
#![no_main]

use hull::rootfs::{Flattener, Limits, MemorySink};
use libfuzzer_sys::fuzz_target;

const SEPARATOR: &[u8] = &[0xff, 0x00, 0xff, 0x00];

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut layers = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        layers.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    layers.push(rest);
    layers
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_image_bytes: 64 << 20,
        max_inodes: 100_000,
        ..Limits::default()
    };
    let mut flattener = Flattener::new(MemorySink::default(), limits);
    for (i, layer) in split(data).into_iter().enumerate().take(8) {
        if flattener.add_layer(&format!("sha256:{i:064x}"), layer).is_err() {
            return;
        }
    }
    let _ = flattener.finish();
});
