//! hull's virtual machine monitor.
//!
//! One VMM process runs per container. It is synchronous (no tokio): one thread per
//! vCPU running `KVM_RUN` and one event-loop thread for devices. See `DESIGN.md`.
