//! virtio-net queue processing: TX chains become backend frames, backend frames fill
//! RX chains. Both are plain functions over a queue, guest memory and the frame
//! buffers; the worker wires them to the event loop and the backend socket.

use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::filter::EgressFilter;
use super::frames::{FrameError, FrameReader, FrameWriter};
use super::{MAX_FRAME_LEN, NET_HDR_LEN};
use crate::devices::virtio::chain::{complete, pop_request, read_buffer, write_buffer, Buffer, ChainError};
use crate::devices::virtio::{ActivateContext, Interrupt};
use crate::event_loop::{EventOps, EventSubscriber};
use crate::memory::GuestMemory;

const RX: usize = 0;
const TX: usize = 1;
/// Event-loop token of the backend socket (queue tokens are their indexes).
const BACKEND: u32 = 2;
/// Most chains handled per event before yielding to the event loop.
const BUDGET: usize = 256;

/// Why a queue cannot be served any more.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// the ring itself is corrupt: the device must be marked broken
    #[error("queue corrupt: {0}")]
    Queue(#[from] virtio_queue::Error),
    /// the backend stream is unusable
    #[error(transparent)]
    Backend(#[from] FrameError),
}

/// Reads the frame of a TX chain (header skipped) into `frame`; returns its length.
pub fn read_tx_frame(mem: &GuestMemory, buffers: &[Buffer], frame: &mut [u8]) -> Result<usize, ChainError> {
    if let Some(index) = buffers.iter().position(|b| b.writable) {
        return Err(ChainError::Direction { index });
    }
    let total: u64 = buffers.iter().map(|b| u64::from(b.len)).sum();
    if total < NET_HDR_LEN as u64 {
        return Err(ChainError::Malformed {
            reason: "tx chain shorter than the virtio-net header",
        });
    }
    if total - NET_HDR_LEN as u64 > frame.len() as u64 {
        return Err(ChainError::Malformed {
            reason: "tx frame larger than 64 KiB",
        });
    }
    let (mut skip, mut len) = (NET_HDR_LEN as u32, 0usize);
    for buffer in buffers {
        let offset = skip.min(buffer.len);
        skip -= offset;
        len += read_buffer(mem, buffer, offset, &mut frame[len..])?;
    }
    Ok(len)
}

/// Moves guest frames that `egress` lets through to `out` while it has room; returns
/// chains completed. A bad chain or a denied frame is returned to the guest unsent
/// (and warned about, rate-limited).
pub fn process_tx(
    mem: &GuestMemory,
    queue: &mut Queue,
    out: &mut FrameWriter,
    scratch: &mut [u8],
    egress: &mut EgressFilter,
) -> Result<usize, virtio_queue::Error> {
    let mut completed = 0;
    while completed < BUDGET && out.has_room(MAX_FRAME_LEN) {
        let Some(popped) = pop_request(queue, mem)? else { break };
        let head = match popped {
            Ok(req) => {
                match read_tx_frame(mem, &req.buffers, scratch) {
                    Ok(len) if egress.pass(&scratch[..len]) => out.push(&scratch[..len]),
                    Ok(_) => {}
                    Err(e) => crate::warn_limited!("virtio-net: tx frame dropped: {e}"),
                }
                req.head
            }
            Err((head, e)) => {
                crate::warn_limited!("virtio-net: bad tx descriptor chain: {e}");
                head
            }
        };
        completed += usize::from(complete(queue, mem, head, 0));
    }
    Ok(completed)
}

/// Writes `frame` behind a virtio-net header into an RX chain; returns bytes written.
pub fn write_rx_frame(mem: &GuestMemory, buffers: &[Buffer], frame: &[u8]) -> Result<u32, ChainError> {
    if let Some(index) = buffers.iter().position(|b| !b.writable) {
        return Err(ChainError::Direction { index });
    }
    let capacity: u64 = buffers.iter().map(|b| u64::from(b.len)).sum();
    if capacity < (NET_HDR_LEN + frame.len()) as u64 {
        return Err(ChainError::Malformed {
            reason: "rx buffer smaller than the frame",
        });
    }
    let mut header = [0u8; NET_HDR_LEN];
    header[10..].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
    let mut data = header.iter().chain(frame).copied();
    let mut written = 0u32;
    let mut chunk = [0u8; 4096];
    for buffer in buffers {
        let mut offset = 0u32;
        while offset < buffer.len {
            let want = chunk.len().min((buffer.len - offset) as usize);
            let mut n = 0;
            for (slot, byte) in chunk[..want].iter_mut().zip(&mut data) {
                *slot = byte;
                n += 1;
            }
            if n == 0 {
                return Ok(written);
            }
            write_buffer(mem, buffer, offset, &chunk[..n])?;
            offset += n as u32;
            written += n as u32;
        }
    }
    Ok(written)
}

/// Delivers buffered backend frames into RX chains while both last; returns chains
/// completed. A frame no chain can hold is dropped (warned), the chain kept.
pub fn fill_rx(mem: &GuestMemory, queue: &mut Queue, inbound: &mut FrameReader) -> Result<usize, PumpError> {
    let mut completed = 0;
    while completed < BUDGET {
        let Some(frame) = inbound.peek()? else { break };
        let Some(popped) = pop_request(queue, mem)? else { break };
        let req = match popped {
            Ok(req) => req,
            Err((head, e)) => {
                crate::warn_limited!("virtio-net: bad rx descriptor chain: {e}");
                completed += usize::from(complete(queue, mem, head, 0));
                continue;
            }
        };
        match write_rx_frame(mem, &req.buffers, frame) {
            Ok(len) => {
                completed += usize::from(complete(queue, mem, req.head, len));
                inbound.consume();
            }
            Err(e @ ChainError::Malformed { .. }) => {
                crate::warn_limited!("virtio-net: rx frame of {} bytes dropped: {e}", frame.len());
                queue.go_to_previous_position();
                inbound.consume();
            }
            Err(e) => {
                crate::warn_limited!("virtio-net: bad rx descriptor chain: {e}");
                completed += usize::from(complete(queue, mem, req.head, 0));
            }
        }
    }
    Ok(completed)
}

/// The activated network device.
pub struct NetWorker {
    mem: GuestMemory,
    queues: Vec<Queue>,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    /// `None` once the backend is gone: TX frames are then dropped.
    backend: Option<UnixStream>,
    inbound: FrameReader,
    outbound: FrameWriter,
    scratch: Vec<u8>,
    egress: EgressFilter,
    watching: Option<EventSet>,
    broken: bool,
}

impl NetWorker {
    /// A worker over the two queues of `ctx` and the backend stream, sending only
    /// what `egress` lets through.
    pub fn new(ctx: ActivateContext, backend: UnixStream, egress: EgressFilter) -> Self {
        NetWorker {
            mem: ctx.mem,
            queues: ctx.queues,
            evts: ctx.queue_evts,
            interrupt: ctx.interrupt,
            backend: Some(backend),
            inbound: FrameReader::default(),
            outbound: FrameWriter::default(),
            scratch: vec![0; MAX_FRAME_LEN],
            egress,
            watching: None,
            broken: false,
        }
    }

    /// Moves everything that can move now; returns chains completed.
    fn pump(&mut self) -> Result<usize, PumpError> {
        let mut total = 0;
        loop {
            let mut progress = 0;
            if let Some(backend) = self.backend.as_mut() {
                while self.inbound.fill(backend)? {
                    if self.inbound.peek()?.is_some() {
                        break;
                    }
                }
                self.outbound.flush(backend)?;
            }
            progress += fill_rx(&self.mem, &mut self.queues[RX], &mut self.inbound)?;
            progress += process_tx(
                &self.mem,
                &mut self.queues[TX],
                &mut self.outbound,
                &mut self.scratch,
                &mut self.egress,
            )?;
            if self.backend.is_none() {
                // No backend: what the guest sends goes nowhere.
                self.outbound = FrameWriter::default();
            }
            total += progress;
            if progress == 0 || total >= BUDGET * 4 {
                return Ok(total);
            }
        }
    }

    /// Watches the backend for what the buffers can take now.
    fn rearm(&mut self, ops: &mut EventOps) {
        let Some(backend) = &self.backend else { return };
        let mut want = EventSet::empty();
        if !matches!(self.inbound.peek(), Ok(Some(_))) {
            want |= EventSet::IN;
        }
        if self.outbound.pending() > 0 {
            want |= EventSet::OUT;
        }
        if self.watching != Some(want) {
            let fd = backend.as_raw_fd();
            let _ = ops.modify(fd, BACKEND, want);
            self.watching = Some(want);
        }
    }

    fn drop_backend(&mut self, ops: &mut EventOps, why: &dyn std::fmt::Display) {
        if let Some(backend) = self.backend.take() {
            crate::warn_limited!("virtio-net: {why}; frames are dropped from now on");
            ops.remove(backend.as_raw_fd());
        }
        self.inbound = FrameReader::default();
        self.outbound = FrameWriter::default();
    }
}

impl EventSubscriber for NetWorker {
    fn init(&mut self, ops: &mut EventOps) {
        for (token, evt) in self.evts.iter().enumerate() {
            if let Err(e) = ops.add(evt.as_raw_fd(), token as u32, EventSet::IN) {
                crate::warn_limited!("virtio-net: cannot watch queue {token}: {e}");
            }
        }
        if let Some(backend) = &self.backend {
            if let Err(e) = ops.add(backend.as_raw_fd(), BACKEND, EventSet::IN) {
                crate::warn_limited!("virtio-net: cannot watch the backend: {e}");
            }
            self.watching = Some(EventSet::IN);
        }
    }

    fn process(&mut self, token: u32, events: EventSet, ops: &mut EventOps) {
        match token as usize {
            RX | TX => {
                let _ = self.evts[token as usize].read();
            }
            _ if events.intersects(EventSet::HANG_UP | EventSet::ERROR) && !events.contains(EventSet::IN) => {
                self.drop_backend(ops, &"the network backend hung up");
            }
            _ => {}
        }
        if self.broken {
            return;
        }
        match self.pump() {
            Ok(0) => {}
            Ok(_) => self.interrupt.signal_used_queue(),
            Err(PumpError::Backend(e)) => {
                self.drop_backend(ops, &e);
                self.interrupt.signal_used_queue();
            }
            Err(e) => {
                crate::warn_limited!("virtio-net: {e}; device marked broken");
                self.broken = true;
                self.interrupt.mark_broken();
            }
        }
        self.rearm(ops);
    }
}

#[cfg(test)]
mod tests;
