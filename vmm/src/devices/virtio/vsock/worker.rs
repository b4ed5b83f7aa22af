//! virtio-vsock queue processing: guest packets from the TX queue go to the muxer,
//! the muxer's packets go into RX buffers. Both are plain functions over a queue and
//! guest memory; the worker only wires them to the event loop.

use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::muxer::{Muxer, Registry};
use super::packet::{read_packet, rx_capacity, write_packet, HEADER_LEN};
use super::MAX_PKT_PAYLOAD;
use crate::devices::virtio::chain::{complete, pop_request};
use crate::devices::virtio::{ActivateContext, Interrupt};
use crate::event_loop::{EventOps, EventSubscriber};
use crate::memory::GuestMemory;

const RX: usize = 0;
const TX: usize = 1;
const EVENT: usize = 2;
const ROUNDS_PER_EVENT: usize = 16;

/// Moves every TX packet the muxer has room for; returns chains completed.
pub fn process_tx(
    mem: &GuestMemory,
    queue: &mut Queue,
    muxer: &mut Muxer,
    payload: &mut [u8],
    reg: &mut dyn Registry,
) -> Result<usize, virtio_queue::Error> {
    let mut completed = 0;
    while muxer.control_room() {
        let Some(popped) = pop_request(queue, mem)? else {
            break;
        };
        let head = match popped {
            Ok(req) => {
                match read_packet(mem, &req.buffers, payload) {
                    Ok(hdr) => muxer.on_guest_packet(&hdr, &payload[..hdr.len as usize], reg),
                    Err(e) => crate::warn_limited!("virtio-vsock: bad tx packet dropped: {e}"),
                }
                req.head
            }
            Err((head, e)) => {
                crate::warn_limited!("virtio-vsock: bad tx descriptor chain: {e}");
                head
            }
        };
        completed += usize::from(complete(queue, mem, head, 0));
    }
    Ok(completed)
}

/// Fills RX buffers with the muxer's packets; returns chains completed.
pub fn fill_rx(
    mem: &GuestMemory,
    queue: &mut Queue,
    muxer: &mut Muxer,
    payload: &mut [u8],
    reg: &mut dyn Registry,
) -> Result<usize, virtio_queue::Error> {
    let mut completed = 0;
    while muxer.has_rx() {
        let Some(popped) = pop_request(queue, mem)? else {
            break;
        };
        let req = match popped {
            Ok(req) => req,
            Err((head, e)) => {
                crate::warn_limited!("virtio-vsock: bad rx descriptor chain: {e}");
                completed += usize::from(complete(queue, mem, head, 0));
                continue;
            }
        };
        let capacity = match rx_capacity(&req.buffers) {
            Ok(c) if c >= HEADER_LEN => c,
            _ => {
                crate::warn_limited!("virtio-vsock: unusable rx buffer");
                completed += usize::from(complete(queue, mem, req.head, 0));
                continue;
            }
        };
        let Some(hdr) = muxer.produce(capacity - HEADER_LEN, payload, reg) else {
            queue.go_to_previous_position();
            break;
        };
        let len = write_packet(mem, &req.buffers, &hdr, &payload[..hdr.len as usize]).unwrap_or(0);
        completed += usize::from(complete(queue, mem, req.head, len));
    }
    Ok(completed)
}

/// The activated vsock device.
pub struct VsockWorker {
    mem: GuestMemory,
    queues: Vec<Queue>,
    evts: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    muxer: Muxer,
    payload: Vec<u8>,
    broken: bool,
}

impl VsockWorker {
    /// A worker over the three queues of `ctx`.
    pub fn new(ctx: ActivateContext, muxer: Muxer) -> Self {
        VsockWorker {
            mem: ctx.mem,
            queues: ctx.queues,
            evts: ctx.queue_evts,
            interrupt: ctx.interrupt,
            muxer,
            payload: vec![0; MAX_PKT_PAYLOAD],
            broken: false,
        }
    }

    fn pump(&mut self, reg: &mut dyn Registry) -> Result<usize, virtio_queue::Error> {
        let mut total = 0;
        for _ in 0..ROUNDS_PER_EVENT {
            let (rx, rest) = self.queues.split_at_mut(TX);
            let sent = process_tx(&self.mem, &mut rest[0], &mut self.muxer, &mut self.payload, reg)?;
            let received = fill_rx(&self.mem, &mut rx[RX], &mut self.muxer, &mut self.payload, reg)?;
            if sent + received == 0 {
                return Ok(total);
            }
            total += sent + received;
        }
        // More work is left: come back through the event loop rather than hog it.
        let _ = self.evts[TX].write(1);
        Ok(total)
    }
}

impl EventSubscriber for VsockWorker {
    fn init(&mut self, ops: &mut EventOps) {
        for (token, evt) in self.evts.iter().enumerate() {
            if let Err(e) = ops.add(evt.as_raw_fd(), token as u32, EventSet::IN) {
                crate::warn_limited!("virtio-vsock: cannot watch queue {token}: {e}");
            }
        }
        self.muxer.init(ops);
    }

    fn process(&mut self, token: u32, events: EventSet, ops: &mut EventOps) {
        match token as usize {
            RX | TX | EVENT => {
                let _ = self.evts[token as usize].read();
            }
            _ => self.muxer.handle_event(token, events, ops),
        }
        if self.broken || token as usize == EVENT {
            return;
        }
        match self.pump(ops) {
            Ok(0) => {}
            Ok(_) => self.interrupt.signal_used_queue(),
            Err(e) => {
                crate::warn_limited!("virtio-vsock: queue corrupt ({e}); device marked broken");
                self.broken = true;
                self.interrupt.mark_broken();
            }
        }
    }
}

#[cfg(test)]
mod tests;
