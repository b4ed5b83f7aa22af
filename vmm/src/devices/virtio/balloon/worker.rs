//! virtio-balloon queue processing: release what the guest reports free or inflates,
//! return every chain. Plain functions over a queue and guest memory; the worker only
//! wires them to the event loop.
//!
//! - `reportingq`: each device-writable buffer is a free block (guest address and
//!   length); its host pages are released, and the chain is returned with nothing
//!   written.
//! - `inflateq`: device-readable arrays of 32-bit little-endian PFNs of 4 KiB pages
//!   the guest gives up; each page is released the same way. The host never asks for
//!   inflation, but a driver may send pages anyway.
//! - `deflateq`: PFNs the guest takes back; without `VIRTIO_BALLOON_F_MUST_TELL_HOST`
//!   there is nothing to do but return the chain (a released page faults back in).

use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestAddress;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::release::{ReleaseError, Releaser};
use crate::devices::virtio::chain::{complete, pop_request, read_buffer, Buffer, ChainError, Request};
use crate::devices::virtio::{ActivateContext, Interrupt};
use crate::event_loop::{EventOps, EventSubscriber};
use crate::memory::GuestMemory;

/// Index of the inflate queue.
pub const INFLATEQ: usize = 0;
/// Index of the deflate queue.
pub const DEFLATEQ: usize = 1;
/// Index of the free page reporting queue (present only with `PAGE_REPORTING`).
pub const REPORTINGQ: usize = 2;
/// PFNs on the inflate and deflate queues count 4 KiB pages, whatever the page sizes.
pub const VIRTIO_BALLOON_PFN_SHIFT: u32 = 12;
/// Most PFNs served from one inflate request (Linux sends at most 256); the rest are
/// refused, so one chain cannot hold the device thread for long.
pub const MAX_PFNS_PER_REQUEST: usize = 4096;
/// PFNs read from guest memory at a time.
const PFN_CHUNK: usize = 256;

/// What the balloon did, shared with the VMM for its summary at exit.
#[derive(Debug, Default)]
pub struct BalloonStats {
    reported: AtomicU64,
    inflated: AtomicU64,
    released: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

/// A snapshot of [`BalloonStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes the guest reported free, in entries inside guest RAM.
    pub reported: u64,
    /// Bytes of 4 KiB pages the guest inflated, inside guest RAM.
    pub inflated: u64,
    /// Host bytes released (whole host pages).
    pub released: u64,
    /// Entries refused: ranges or PFNs outside guest RAM, PFNs past the per-request
    /// bound, malformed chains or buffers of the wrong direction.
    pub refused: u64,
    /// Releases the host kernel refused.
    pub failed: u64,
}

impl BalloonStats {
    /// The counters now.
    pub fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            reported: get(&self.reported),
            inflated: get(&self.inflated),
            released: get(&self.released),
            refused: get(&self.refused),
            failed: get(&self.failed),
        }
    }

    /// One line for the VMM's stderr at exit, or `None` when the guest never used
    /// the device.
    pub fn summary(&self) -> Option<String> {
        let c = self.counts();
        if c == Counts::default() {
            return None;
        }
        Some(format!(
            "vmm: balloon: {} bytes reported free, {} bytes inflated, {} bytes released to the host; \
             {} entries refused, {} releases failed",
            c.reported, c.inflated, c.released, c.refused, c.failed
        ))
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Releases guest range `addr..addr+len` that the guest gave up (`what`). `None` when
/// the range was refused (not inside guest RAM); otherwise the host bytes released,
/// 0 when the host kernel refused.
fn give_back(
    mem: &GuestMemory,
    releaser: &Releaser,
    stats: &BalloonStats,
    what: &str,
    addr: GuestAddress,
    len: u64,
) -> Option<u64> {
    match releaser.release(mem, addr, len) {
        Ok(released) => {
            BalloonStats::add(&stats.released, released as u64);
            Some(released as u64)
        }
        Err(e @ ReleaseError::OutsideRam { .. }) => {
            BalloonStats::add(&stats.refused, 1);
            crate::warn_limited!("virtio-balloon: {what} refused: {e}");
            None
        }
        Err(e) => {
            BalloonStats::add(&stats.failed, 1);
            crate::warn_limited!("virtio-balloon: {what} not released: {e}");
            Some(0)
        }
    }
}

/// Serves one free page report: every buffer must be device-writable; each is
/// released on its own.
pub fn serve_report(
    mem: &GuestMemory,
    releaser: &Releaser,
    stats: &BalloonStats,
    req: &Request,
) -> Result<(), ChainError> {
    if let Some(index) = req.buffers.iter().position(|b| !b.writable) {
        return Err(ChainError::Direction { index });
    }
    for buffer in &req.buffers {
        let len = u64::from(buffer.len);
        if give_back(mem, releaser, stats, "free page report", buffer.addr, len).is_some() {
            BalloonStats::add(&stats.reported, len);
        }
    }
    Ok(())
}

/// Calls `f` with each little-endian PFN in `buffers`, at most `max` of them; returns
/// how many PFNs were left over past `max`.
fn for_each_pfn<F>(mem: &GuestMemory, buffers: &[Buffer], max: usize, mut f: F) -> Result<u64, ChainError>
where
    F: FnMut(u32),
{
    let mut chunk = [0u8; PFN_CHUNK * 4];
    let (mut left, mut skipped) = (max, 0u64);
    for buffer in buffers {
        let mut offset = 0u32;
        while offset < buffer.len {
            if left == 0 {
                skipped += u64::from(buffer.len - offset) / 4;
                break;
            }
            let n = read_buffer(mem, buffer, offset, &mut chunk[..(left * 4).min(PFN_CHUNK * 4)])?;
            if n == 0 {
                break;
            }
            chunk[..n]
                .chunks_exact(4)
                .for_each(|b| f(u32::from_le_bytes([b[0], b[1], b[2], b[3]])));
            (offset, left) = (offset + n as u32, left - n / 4);
        }
    }
    Ok(skipped)
}

/// Serves one inflate request: device-readable arrays of whole PFNs; each page is
/// released on its own.
pub fn serve_inflate(
    mem: &GuestMemory,
    releaser: &Releaser,
    stats: &BalloonStats,
    req: &Request,
) -> Result<(), ChainError> {
    if let Some(index) = req.buffers.iter().position(|b| b.writable) {
        return Err(ChainError::Direction { index });
    }
    if req.buffers.iter().any(|b| b.len % 4 != 0) {
        return Err(ChainError::Malformed {
            reason: "inflate buffer is not a whole number of 32-bit PFNs",
        });
    }
    let page = 1u64 << VIRTIO_BALLOON_PFN_SHIFT;
    let skipped = for_each_pfn(mem, &req.buffers, MAX_PFNS_PER_REQUEST, |pfn| {
        let addr = GuestAddress(u64::from(pfn) << VIRTIO_BALLOON_PFN_SHIFT);
        if give_back(mem, releaser, stats, "inflated page", addr, page).is_some() {
            BalloonStats::add(&stats.inflated, page);
        }
    })?;
    if skipped > 0 {
        BalloonStats::add(&stats.refused, skipped);
        crate::warn_limited!(
            "virtio-balloon: {skipped} PFNs past the first {MAX_PFNS_PER_REQUEST} of an inflate request refused"
        );
    }
    Ok(())
}

/// Takes every chain off `queue`, serves it with `serve` and returns it with nothing
/// written; a refused chain (`what` names the queue) is counted and returned too.
/// Returns the chains completed, or `Err` when the ring is corrupt.
fn drain<F>(
    mem: &GuestMemory,
    queue: &mut Queue,
    stats: &BalloonStats,
    what: &str,
    mut serve: F,
) -> Result<usize, virtio_queue::Error>
where
    F: FnMut(&Request) -> Result<(), ChainError>,
{
    let mut completed = 0;
    while let Some(popped) = pop_request(queue, mem)? {
        let (head, result) = match popped {
            Ok(req) => (req.head, serve(&req)),
            Err((head, e)) => (head, Err(e)),
        };
        if let Err(e) = result {
            BalloonStats::add(&stats.refused, 1);
            crate::warn_limited!("virtio-balloon: {what} chain refused: {e}");
        }
        completed += usize::from(complete(queue, mem, head, 0));
    }
    Ok(completed)
}

/// Serves every pending free page report.
pub fn process_reporting(
    mem: &GuestMemory,
    queue: &mut Queue,
    releaser: &Releaser,
    stats: &BalloonStats,
) -> Result<usize, virtio_queue::Error> {
    drain(mem, queue, stats, "reporting", |req| {
        serve_report(mem, releaser, stats, req)
    })
}

/// Serves every pending inflate request.
pub fn process_inflate(
    mem: &GuestMemory,
    queue: &mut Queue,
    releaser: &Releaser,
    stats: &BalloonStats,
) -> Result<usize, virtio_queue::Error> {
    drain(mem, queue, stats, "inflate", |req| {
        serve_inflate(mem, releaser, stats, req)
    })
}

/// Returns every pending deflate request (nothing to do for them).
pub fn process_deflate(
    mem: &GuestMemory,
    queue: &mut Queue,
    stats: &BalloonStats,
) -> Result<usize, virtio_queue::Error> {
    drain(mem, queue, stats, "deflate", |_| Ok(()))
}

/// The activated balloon: owns its two or three queues.
pub struct BalloonWorker {
    mem: GuestMemory,
    queues: Vec<Queue>,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    releaser: Releaser,
    stats: Arc<BalloonStats>,
    broken: bool,
}

impl BalloonWorker {
    /// A worker over the queues of `ctx` (inflate, deflate and, when negotiated,
    /// reporting), releasing with `releaser`.
    pub fn new(ctx: ActivateContext, releaser: Releaser, stats: Arc<BalloonStats>) -> Self {
        BalloonWorker {
            mem: ctx.mem,
            queues: ctx.queues,
            evts: ctx.queue_evts,
            interrupt: ctx.interrupt,
            releaser,
            stats,
            broken: false,
        }
    }

    /// Serves queue `index`; returns the chains completed.
    fn serve(&mut self, index: usize) -> Result<usize, virtio_queue::Error> {
        let (mem, releaser, stats) = (&self.mem, &self.releaser, &*self.stats);
        let Some(queue) = self.queues.get_mut(index) else {
            return Ok(0);
        };
        match index {
            INFLATEQ => process_inflate(mem, queue, releaser, stats),
            DEFLATEQ => process_deflate(mem, queue, stats),
            _ => process_reporting(mem, queue, releaser, stats),
        }
    }

    fn mark_broken(&mut self, ops: &mut EventOps) {
        self.broken = true;
        for evt in &self.evts {
            ops.remove(evt.as_raw_fd());
        }
        self.interrupt.mark_broken();
    }
}

impl EventSubscriber for BalloonWorker {
    fn init(&mut self, ops: &mut EventOps) {
        for (token, evt) in self.evts.iter().enumerate() {
            if let Err(e) = ops.add(evt.as_raw_fd(), token as u32, EventSet::IN) {
                crate::warn_limited!("virtio-balloon: cannot watch queue {token}: {e}");
            }
        }
    }

    fn process(&mut self, token: u32, _events: EventSet, ops: &mut EventOps) {
        let index = token as usize;
        if let Some(evt) = self.evts.get(index) {
            let _ = evt.read();
        }
        if self.broken {
            return;
        }
        match self.serve(index) {
            Ok(0) => {}
            Ok(_) => self.interrupt.signal_used_queue(),
            Err(e) => {
                crate::warn_limited!("virtio-balloon: queue {index} corrupt ({e}); device marked broken");
                self.mark_broken(ops);
            }
        }
    }
}

#[cfg(test)]
mod tests;
