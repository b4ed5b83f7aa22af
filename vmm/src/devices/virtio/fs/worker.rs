//! The virtio-fs worker: hands the queues to the backend when it starts, then turns
//! the backend's call eventfds into the device's interrupt.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use vhost::vhost_user::Frontend;
use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::session::{self, QueueFds};
use crate::devices::virtio::{ActivateContext, Interrupt};
use crate::event_loop::{EventOps, EventSubscriber};
use crate::memory::GuestMemory;

/// Token of the backend's socket (the call eventfds use their queue index).
const BACKEND: u32 = u32::MAX;

/// What the session needs; taken when the worker starts.
struct Pending {
    mem: GuestMemory,
    queues: Vec<Queue>,
    kicks: Vec<EventFd>,
    driver_features: u64,
}

/// A running virtio-fs device.
pub struct FsWorker {
    frontend: Frontend,
    pending: Option<Pending>,
    calls: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    protocol_features: bool,
    started: bool,
}

impl FsWorker {
    /// A worker for the activated device; the backend is told in [`EventSubscriber::init`].
    pub fn new(ctx: ActivateContext, frontend: Frontend, calls: Vec<EventFd>, protocol_features: bool) -> Self {
        FsWorker {
            frontend,
            pending: Some(Pending {
                mem: ctx.mem,
                queues: ctx.queues,
                kicks: ctx.queue_evts,
                driver_features: ctx.driver_features,
            }),
            calls,
            interrupt: ctx.interrupt,
            protocol_features,
            started: false,
        }
    }

    fn start_backend(&mut self) -> Result<(), session::SessionError> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        let steps = session::plan(&p.mem, &p.queues, p.driver_features, self.protocol_features)?;
        let fds = QueueFds {
            kicks: &p.kicks,
            calls: &self.calls,
        };
        self.started = true;
        session::send(&mut self.frontend, &p.mem, &steps, &fds)?;
        // The guest may have notified before the backend had its kick fd, or before the
        // ring was enabled (a backend drops a kick on a disabled ring): kick once more so
        // nothing already queued waits for a notify that will not come.
        for kick in &p.kicks {
            let _ = kick.write(1);
        }
        Ok(())
    }

    fn backend_gone(&mut self, ops: &mut EventOps, why: &str) {
        crate::warn_limited!("virtio-fs: {why}; device marked broken");
        ops.remove(self.frontend.as_raw_fd());
        self.interrupt.mark_broken();
    }
}

impl EventSubscriber for FsWorker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = self.start_backend() {
            crate::warn_limited!("virtio-fs: {e}; device marked broken");
            self.interrupt.mark_broken();
            return;
        }
        for (token, call) in self.calls.iter().enumerate() {
            if let Err(e) = ops.add(call.as_raw_fd(), token as u32, EventSet::IN) {
                crate::warn_limited!("virtio-fs: cannot watch queue {token}'s call eventfd: {e}");
            }
        }
        // The backend only ever answers requests, all sent from this thread and read
        // back at once; the socket becomes readable only when the backend goes away.
        if let Err(e) = ops.add(self.frontend.as_raw_fd(), BACKEND, EventSet::IN) {
            crate::warn_limited!("virtio-fs: cannot watch the backend: {e}");
        }
    }

    fn process(&mut self, token: u32, _events: EventSet, ops: &mut EventOps) {
        if token == BACKEND {
            return self.backend_gone(ops, "the backend hung up");
        }
        if let Some(call) = self.calls.get(token as usize) {
            let _ = call.read();
            self.interrupt.signal_used_queue();
        }
    }
}

impl Drop for FsWorker {
    fn drop(&mut self) {
        if self.started && !self.interrupt.is_broken() {
            session::stop(&self.frontend, self.calls.len());
        }
    }
}
