//! The agent proper; see `main.rs`.

mod cgroup;
mod files;
#[cfg(feature = "hostile")]
mod hostile;
mod net;
mod process;
mod root;
mod server;
mod sys;
mod vsock;

use std::thread;

use guest_agent::protocol::{CONTROL_PORT, STDIO_PORT};

use server::Agent;
use vsock::Listener;

pub fn run() {
    sys::boot_mark();
    let setup = setup();
    if let Err(e) = &setup {
        eprintln!("hull-agent: {e}");
    }
    let agent = Agent::new(setup.err());
    let listen = |port| {
        Listener::bind(port).unwrap_or_else(|e| {
            eprintln!("hull-agent: vsock port {port}: {e}");
            sys::power_off()
        })
    };
    let (control, stdio) = (listen(CONTROL_PORT), listen(STDIO_PORT));
    let reaper = agent.clone();
    thread::spawn(move || reaper.reap_forever());
    let attach = agent.clone();
    thread::spawn(move || attach.serve_stdio(stdio));
    agent.serve_control(control);
    sys::power_off()
}

fn setup() -> Result<(), String> {
    root::mount_agent_filesystems().map_err(|e| e.to_string())?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = root::BootConfig::from_cmdline(&cmdline);
    net::configure(config.net.as_ref()).map_err(|e| e.to_string())?;
    root::prepare(&config).map_err(|e| e.to_string())
}
