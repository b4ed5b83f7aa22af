//! hull's virtual machine monitor.
//!
//! One VMM process runs per container. It is synchronous (no tokio): one thread per
//! vCPU running `KVM_RUN` and one event-loop thread for devices. See `DESIGN.md`.
//!
//! The boot is one recipe, [`builder::boot`]: config, memory layout, guest memory, VM
//! (irqchip and PIT), devices, kernel and initramfs, vCPUs, run loop.

pub mod arch;
pub mod builder;
pub mod bus;
pub mod config;
pub mod confine;
pub mod devices;
pub mod event_loop;
pub mod logger;
pub mod memory;
pub mod timings;
pub mod vstate;
