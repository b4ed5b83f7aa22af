#![no_main]
//! `--user` resolved against an image's /etc/passwd and /etc/group (image bytes are
//! untrusted), and the image config merged into the process spec.

use guest_agent::user::resolve;
use hull::container::spec::{merge, Overrides};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let (spec, passwd, group) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let _ = resolve(spec, passwd, group);
    if let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = merge(&config, &Overrides::default());
    }
});
