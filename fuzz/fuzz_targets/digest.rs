#![no_main]
//! Digests from registries, manifests and archive member names.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = hull::image::Digest::parse(s) {
            assert!(d
                .hex()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert_eq!(d.to_string(), s);
        }
    }
});
