#![no_main]
//! Frames the host reads from a guest that may be hostile, and the agent from the host.

use guest_agent::protocol::{read_frame, AgentMessage, Attach, HostMessage, MAX_AGENT_FRAME, MAX_HOST_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(_)) = read_frame::<AgentMessage>(&mut r, MAX_AGENT_FRAME) {}
    let mut r = data;
    while let Ok(Some(_)) = read_frame::<HostMessage>(&mut r, MAX_HOST_FRAME) {}
    let _ = read_frame::<Attach>(&mut &data[..], MAX_AGENT_FRAME);
});
