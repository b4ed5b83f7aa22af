//! The device event loop: one thread, one epoll, many subscribers (device workers).
//!
//! Workers are added when a device is activated and removed when the driver resets
//! it. Each registration carries a subscriber id and a token of the subscriber's
//! choosing, packed into the epoll data word.

use std::collections::HashMap;
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

pub use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const WAKE_DATA: u64 = u64::MAX;
const MAX_EVENTS: usize = 64;

/// A worker driven by the event loop.
pub trait EventSubscriber: Send {
    /// Registers the subscriber's file descriptors.
    fn init(&mut self, ops: &mut EventOps);
    /// Handles readiness of the fd registered with `token`.
    fn process(&mut self, token: u32, events: EventSet, ops: &mut EventOps);
}

/// Registration operations available to one subscriber.
pub struct EventOps<'a> {
    epoll: &'a Epoll,
    id: u32,
    fds: &'a mut Vec<RawFd>,
}

impl EventOps<'_> {
    fn data(&self, token: u32) -> u64 {
        (u64::from(self.id) << 32) | u64::from(token)
    }

    /// Watches `fd` for `events`, reported with `token`.
    pub fn add(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Add, fd, EpollEvent::new(events, self.data(token)))?;
        self.fds.push(fd);
        Ok(())
    }

    /// Changes the events watched on `fd`.
    pub fn modify(&mut self, fd: RawFd, token: u32, events: EventSet) -> io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Modify, fd, EpollEvent::new(events, self.data(token)))
    }

    /// Stops watching `fd`.
    pub fn remove(&mut self, fd: RawFd) {
        let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
        self.fds.retain(|f| *f != fd);
    }
}

enum Control {
    Add(u32, Box<dyn EventSubscriber>),
    Remove(u32),
}

struct Slot {
    subscriber: Box<dyn EventSubscriber>,
    fds: Vec<RawFd>,
}

/// Starts and stops device workers; implemented by the event loop's handle.
pub trait WorkerSpawner: Send + Sync {
    /// Hands `worker` to the loop; returns its id.
    fn spawn(&self, worker: Box<dyn EventSubscriber>) -> io::Result<u32>;
    /// Removes worker `id` (dropping it closes its resources).
    fn stop(&self, id: u32);
}

/// Cloneable handle used by transports to add and remove workers.
#[derive(Clone)]
pub struct EventLoopHandle {
    tx: Sender<Control>,
    wake: Arc<EventFd>,
    next_id: Arc<AtomicU32>,
}

impl WorkerSpawner for EventLoopHandle {
    fn spawn(&self, worker: Box<dyn EventSubscriber>) -> io::Result<u32> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Control::Add(id, worker))
            .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        self.wake.write(1)?;
        Ok(id)
    }

    fn stop(&self, id: u32) {
        if self.tx.send(Control::Remove(id)).is_ok() {
            let _ = self.wake.write(1);
        }
    }
}

/// The loop itself; run it on its own thread with [`EventLoop::run`].
pub struct EventLoop {
    epoll: Epoll,
    wake: Arc<EventFd>,
    rx: Receiver<Control>,
    slots: HashMap<u32, Slot>,
}

impl EventLoop {
    /// A new loop and the handle to feed it.
    pub fn new() -> io::Result<(EventLoop, EventLoopHandle)> {
        let epoll = Epoll::new()?;
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        epoll.ctl(
            ControlOperation::Add,
            wake.as_raw_fd(),
            EpollEvent::new(EventSet::IN, WAKE_DATA),
        )?;
        let (tx, rx) = channel();
        let handle = EventLoopHandle {
            tx,
            wake: wake.clone(),
            next_id: Arc::new(AtomicU32::new(0)),
        };
        Ok((
            EventLoop {
                epoll,
                wake,
                rx,
                slots: HashMap::new(),
            },
            handle,
        ))
    }

    /// Dispatches events forever.
    pub fn run(mut self) {
        loop {
            if let Err(e) = self.run_once(-1) {
                crate::warn_limited!("event loop: epoll wait failed: {e}");
            }
        }
    }

    /// Waits up to `timeout_ms` and dispatches what is ready; returns events handled.
    pub fn run_once(&mut self, timeout_ms: i32) -> io::Result<usize> {
        let mut events = [EpollEvent::default(); MAX_EVENTS];
        let n = match self.epoll.wait(timeout_ms, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        };
        for event in &events[..n] {
            if event.data() == WAKE_DATA {
                self.drain_control();
            } else {
                self.dispatch((event.data() >> 32) as u32, event.data() as u32, event.event_set());
            }
        }
        Ok(n)
    }

    fn drain_control(&mut self) {
        let _ = self.wake.read();
        while let Ok(control) = self.rx.try_recv() {
            match control {
                Control::Add(id, subscriber) => self.add(id, subscriber),
                Control::Remove(id) => self.remove(id),
            }
        }
    }

    fn add(&mut self, id: u32, mut subscriber: Box<dyn EventSubscriber>) {
        let mut fds = Vec::new();
        subscriber.init(&mut EventOps {
            epoll: &self.epoll,
            id,
            fds: &mut fds,
        });
        self.slots.insert(id, Slot { subscriber, fds });
    }

    fn remove(&mut self, id: u32) {
        if let Some(slot) = self.slots.remove(&id) {
            for fd in slot.fds {
                let _ = self.epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
        }
    }

    fn dispatch(&mut self, id: u32, token: u32, events: EventSet) {
        if let Some(slot) = self.slots.get_mut(&id) {
            let mut ops = EventOps {
                epoll: &self.epoll,
                id,
                fds: &mut slot.fds,
            };
            slot.subscriber.process(token, events, &mut ops);
        }
    }

    /// Number of live subscribers.
    pub fn subscribers(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Counter {
        evt: EventFd,
        seen: Arc<Mutex<Vec<u32>>>,
    }

    impl EventSubscriber for Counter {
        fn init(&mut self, ops: &mut EventOps) {
            ops.add(self.evt.as_raw_fd(), 7, EventSet::IN).unwrap();
        }
        fn process(&mut self, token: u32, _events: EventSet, _ops: &mut EventOps) {
            let _ = self.evt.read();
            self.seen.lock().unwrap().push(token);
        }
    }

    #[test]
    fn event_loop_dispatches_to_added_worker_and_stops_after_remove() {
        let (mut ev, handle) = EventLoop::new().unwrap();
        let evt = EventFd::new(EFD_NONBLOCK).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let id = handle
            .spawn(Box::new(Counter {
                evt: evt.try_clone().unwrap(),
                seen: seen.clone(),
            }))
            .unwrap();
        ev.run_once(100).unwrap();
        assert_eq!(ev.subscribers(), 1);
        evt.write(1).unwrap();
        ev.run_once(100).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![7]);
        handle.stop(id);
        ev.run_once(100).unwrap();
        assert_eq!(ev.subscribers(), 0);
        evt.write(1).unwrap();
        assert_eq!(ev.run_once(50).unwrap(), 0);
    }
}
