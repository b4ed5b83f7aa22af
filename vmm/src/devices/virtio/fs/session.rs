//! The vhost-user messages that hand a running device to its backend, computed as
//! data ([`plan`]) and then sent ([`send`]). Planning is a plain function of guest
//! memory and the queues, so it is tested without a backend.

use std::os::fd::AsRawFd;

use thiserror::Error;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::memory::GuestMemory;

/// Errors planning or sending the session.
#[derive(Debug, Error)]
pub enum SessionError {
    /// guest memory is not file backed, so the backend cannot map it
    #[error("guest memory region at {0:#x} is not shareable (no file backing)")]
    PrivateMemory(u64),
    /// a ring does not lie inside one guest memory region
    #[error("queue {queue} {ring} at {addr:#x} (+{len}) is outside guest memory")]
    RingOutsideMemory {
        /// The queue.
        queue: usize,
        /// Which ring.
        ring: &'static str,
        /// Its guest address.
        addr: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// a message to the backend failed
    #[error("vhost-user {what} failed")]
    Backend {
        /// The request.
        what: &'static str,
        /// Why.
        #[source]
        source: vhost::Error,
    },
}

/// One vhost-user request of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// SET_FEATURES.
    Features(u64),
    /// SET_MEM_TABLE: (guest address, size, host address, offset in the memory file).
    MemTable(Vec<(u64, u64, u64, u64)>),
    /// SET_VRING_NUM.
    VringNum(usize, u16),
    /// SET_VRING_ADDR with host addresses of the descriptor table, used and avail rings.
    VringAddr {
        /// The queue.
        queue: usize,
        /// Maximum size.
        max_size: u16,
        /// Size the driver chose.
        size: u16,
        /// Descriptor table (host address).
        desc: u64,
        /// Used ring (host address).
        used: u64,
        /// Available ring (host address).
        avail: u64,
    },
    /// SET_VRING_BASE: where the backend starts reading the available ring.
    VringBase(usize, u16),
    /// SET_VRING_CALL with the queue's call eventfd.
    VringCall(usize),
    /// SET_VRING_KICK with the queue's kick eventfd.
    VringKick(usize),
    /// SET_VRING_ENABLE (only with VHOST_USER_F_PROTOCOL_FEATURES).
    VringEnable(usize),
}

/// Lengths of the split-ring parts of a queue of `size` entries (virtio 1.x, 2.7).
fn ring_lengths(size: u16) -> [(&'static str, u64); 3] {
    let n = u64::from(size);
    [
        ("descriptor table", 16 * n),
        ("avail ring", 6 + 2 * n),
        ("used ring", 6 + 8 * n),
    ]
}

/// The host address of `len` bytes at guest address `addr`, all in one region.
fn host_address(mem: &GuestMemory, addr: u64, len: u64) -> Option<u64> {
    let region = mem.find_region(GuestAddress(addr))?;
    let offset = addr - region.start_addr().0;
    (offset.checked_add(len)? <= region.len()).then(|| region.as_ptr() as u64 + offset)
}

/// The session for `queues` over `mem`, with the driver's `features`.
/// `protocol_features`: the backend offered VHOST_USER_F_PROTOCOL_FEATURES (it is
/// acked, and rings then start disabled until SET_VRING_ENABLE).
pub fn plan(
    mem: &GuestMemory,
    queues: &[Queue],
    features: u64,
    protocol_features: bool,
) -> Result<Vec<Step>, SessionError> {
    let protocol_bit = if protocol_features {
        super::device::VHOST_USER_F_PROTOCOL_FEATURES
    } else {
        0
    };
    let mut steps = vec![
        Step::Features(features | protocol_bit),
        Step::MemTable(memory_table(mem)?),
    ];
    for (i, q) in queues.iter().enumerate() {
        let [desc, avail, used] = ring_lengths(q.size());
        let locate = |(ring, len): (&'static str, u64), addr: u64| {
            host_address(mem, addr, len).ok_or(SessionError::RingOutsideMemory {
                queue: i,
                ring,
                addr,
                len,
            })
        };
        steps.push(Step::VringNum(i, q.size()));
        steps.push(Step::VringAddr {
            queue: i,
            max_size: q.max_size(),
            size: q.size(),
            desc: locate(desc, q.desc_table())?,
            used: locate(used, q.used_ring())?,
            avail: locate(avail, q.avail_ring())?,
        });
        steps.push(Step::VringBase(i, q.next_avail()));
        steps.push(Step::VringCall(i));
        steps.push(Step::VringKick(i));
        if protocol_features {
            steps.push(Step::VringEnable(i));
        }
    }
    Ok(steps)
}

fn memory_table(mem: &GuestMemory) -> Result<Vec<(u64, u64, u64, u64)>, SessionError> {
    mem.iter()
        .map(|r| {
            let file = r.file_offset().ok_or(SessionError::PrivateMemory(r.start_addr().0))?;
            Ok((r.start_addr().0, r.len(), r.as_ptr() as u64, file.start()))
        })
        .collect()
}

/// The eventfds the session hands over, per queue.
pub struct QueueFds<'a> {
    /// Written by the transport on a guest notify; read by the backend.
    pub kicks: &'a [EventFd],
    /// Written by the backend when it used buffers; read by the worker.
    pub calls: &'a [EventFd],
}

/// Sends `steps` to `frontend`. The memory table's fd is the memory file of each region.
pub fn send(frontend: &mut Frontend, mem: &GuestMemory, steps: &[Step], fds: &QueueFds) -> Result<(), SessionError> {
    for step in steps {
        let (what, result) = send_step(frontend, mem, step, fds);
        result.map_err(|source| SessionError::Backend { what, source })?;
    }
    Ok(())
}

fn send_step(
    frontend: &mut Frontend,
    mem: &GuestMemory,
    step: &Step,
    fds: &QueueFds,
) -> (&'static str, vhost::Result<()>) {
    let missing = || vhost::Error::InvalidQueue;
    match *step {
        Step::Features(f) => ("SET_FEATURES", frontend.set_features(f)),
        Step::MemTable(_) => ("SET_MEM_TABLE", set_mem_table(frontend, mem)),
        Step::VringNum(i, n) => ("SET_VRING_NUM", frontend.set_vring_num(i, n)),
        Step::VringAddr {
            queue,
            max_size,
            size,
            desc,
            used,
            avail,
        } => {
            let data = VringConfigData {
                queue_max_size: max_size,
                queue_size: size,
                flags: 0,
                desc_table_addr: desc,
                used_ring_addr: used,
                avail_ring_addr: avail,
                log_addr: None,
            };
            ("SET_VRING_ADDR", frontend.set_vring_addr(queue, &data))
        }
        Step::VringBase(i, base) => ("SET_VRING_BASE", frontend.set_vring_base(i, base)),
        Step::VringCall(i) => (
            "SET_VRING_CALL",
            fds.calls
                .get(i)
                .ok_or_else(missing)
                .and_then(|e| frontend.set_vring_call(i, e)),
        ),
        Step::VringKick(i) => (
            "SET_VRING_KICK",
            fds.kicks
                .get(i)
                .ok_or_else(missing)
                .and_then(|e| frontend.set_vring_kick(i, e)),
        ),
        Step::VringEnable(i) => ("SET_VRING_ENABLE", frontend.set_vring_enable(i, true)),
    }
}

fn set_mem_table(frontend: &Frontend, mem: &GuestMemory) -> vhost::Result<()> {
    let regions = mem
        .iter()
        .map(VhostUserMemoryRegionInfo::from_guest_region)
        .collect::<vhost::Result<Vec<_>>>()?;
    frontend.set_mem_table(&regions).map(|_| ())
}

/// Stops every queue (GET_VRING_BASE), as the spec asks before the rings go away.
pub fn stop(frontend: &Frontend, queues: usize) {
    for i in 0..queues {
        if let Err(e) = frontend.get_vring_base(i) {
            crate::warn_limited!(
                "virtio-fs: stopping queue {i} in the backend (fd {}): {e}",
                frontend.as_raw_fd()
            );
        }
    }
}

#[cfg(test)]
mod tests;
