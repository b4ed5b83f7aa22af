#![no_main]
//! A tar stream from the guest (`hull cp CONTAINER:SRC DEST`) or the user (`cp -`),
//! unpacked into a scratch directory: no panic, and nothing written outside it.

use guest_agent::archive::{unpack, Placement, UnpackOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(root) = tempfile::tempdir() else { return };
    let dest = root.path().join("dest");
    if std::fs::create_dir(&dest).is_err() {
        return;
    }
    let place = |_| {
        Ok(Placement {
            rename: Some("renamed".into()),
            ..Placement::into(&dest)?
        })
    };
    let options = UnpackOptions {
        max_bytes: 1 << 20,
        ..UnpackOptions::host()
    };
    let _ = unpack(data, options, place);
    let entries = std::fs::read_dir(root.path()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 1, "something was written beside the destination");
});
