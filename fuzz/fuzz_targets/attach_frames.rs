#![no_main]
//! Frames on the attach socket between `hull run` and the container monitor: the
//! monitor relays what a hostile guest sends, and a client may send anything.

use hull::container::attach::{Frame, MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    loop {
        let before = r.len();
        let Ok(Some(frame)) = Frame::read(&mut r) else { break };
        let consumed = before - r.len();
        assert!(consumed >= 5 && consumed <= 5 + MAX_FRAME as usize);
        let encoded = frame.encode();
        // Error text is made UTF-8 and a StdinClosed payload is ignored; every other
        // frame re-encodes to exactly the bytes it was read from.
        if !matches!(frame, Frame::Error(_) | Frame::StdinClosed) {
            assert_eq!(encoded, data[data.len() - before..][..consumed]);
        }
        assert_eq!(
            Frame::read(&mut &encoded[..]).expect("an encoded frame decodes"),
            Some(frame)
        );
    }
});
