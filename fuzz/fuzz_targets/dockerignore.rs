#![no_main]
//! .dockerignore patterns and context paths are untrusted: matching must never panic
//! and must stay polynomial.

use hull::image::dockerfile::DockerIgnore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line is the path to test, the rest the patterns.
    let (path, patterns) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(ignore) = DockerIgnore::parse(patterns) {
        let _ = ignore.is_excluded(path);
        let _ = ignore.must_walk(path);
        let _ = ignore.keeping_build_files(path).is_excluded(".dockerignore");
    }
});
