#![no_main]
//! Image references from the command line and from archives.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = hull::image::Reference::parse(s) {
            // The normalised form parses to itself.
            let again = hull::image::Reference::parse(&r.to_string()).expect("normalised form parses");
            assert_eq!(again, r);
            let _ = r.familiar();
        }
    }
});
