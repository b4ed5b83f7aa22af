//! `hull-agent`: PID 1 of every hull micro-VM.
//!
//! Boot: tell the VMM `/init` runs, mount the kernel filesystems, assemble the
//! container root (base disk, writable layer, overlayfs), then serve the host over
//! vsock until it asks for shutdown. A setup failure is reported to the host on its
//! first `Start` instead of killing the VM, so the user sees why.

#[cfg(target_os = "linux")]
mod agent;

#[cfg(target_os = "linux")]
fn main() {
    agent::run()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("hull-agent runs only inside a Linux guest");
    std::process::exit(1);
}
