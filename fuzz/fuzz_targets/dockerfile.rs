#![no_main]
//! Dockerfiles are untrusted build input: parsing and resolving must never panic.

use hull::image::dockerfile::{parse, resolve, BuildOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(df) = parse("Dockerfile", text) {
        let mut opts = BuildOptions::default();
        opts.build_args.insert("A".into(), "${A}$A".into());
        let _ = resolve(&df, &opts, &|_| vec![("PATH".into(), "/bin".into())]);
    }
});
