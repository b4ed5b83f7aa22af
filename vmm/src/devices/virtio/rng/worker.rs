//! virtio-rng queue processing: fill each device-writable buffer with random bytes.

use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::virtio::chain::{complete, pop_request, write_buffer, ChainError, Request};
use crate::devices::virtio::Interrupt;
use crate::event_loop::{EventOps, EventSubscriber};
use crate::memory::GuestMemory;

/// Most bytes one request gets; the driver simply asks again for more.
pub const MAX_BYTES_PER_REQUEST: usize = 64 * 1024;

/// Fills `buf` from the kernel's CSPRNG.
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the pointer and length describe `rest`, a live, writable buffer.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        } else {
            done += n as usize;
        }
    }
    Ok(())
}

/// Serves one request; returns the bytes written to the guest.
pub fn serve_request<F>(mem: &GuestMemory, req: &Request, source: &mut F) -> Result<u32, ChainError>
where
    F: FnMut(&mut [u8]) -> io::Result<()>,
{
    if let Some(index) = req.buffers.iter().position(|b| !b.writable) {
        return Err(ChainError::Direction { index });
    }
    let mut chunk = [0u8; 4096];
    let mut total = 0usize;
    for buffer in &req.buffers {
        let mut offset = 0u32;
        while offset < buffer.len && total < MAX_BYTES_PER_REQUEST {
            let n = chunk
                .len()
                .min((buffer.len - offset) as usize)
                .min(MAX_BYTES_PER_REQUEST - total);
            source(&mut chunk[..n]).map_err(|_| ChainError::Malformed {
                reason: "host entropy unavailable",
            })?;
            write_buffer(mem, buffer, offset, &chunk[..n])?;
            offset += n as u32;
            total += n;
        }
    }
    Ok(total as u32)
}

/// Serves every pending request. Returns how many were completed, or `Err` when the
/// ring is corrupt.
pub fn process_queue<F>(mem: &GuestMemory, queue: &mut Queue, source: &mut F) -> Result<usize, virtio_queue::Error>
where
    F: FnMut(&mut [u8]) -> io::Result<()>,
{
    let mut completed = 0;
    while let Some(popped) = pop_request(queue, mem)? {
        let (head, len) = match popped {
            Ok(req) => match serve_request(mem, &req, source) {
                Ok(len) => (req.head, len),
                Err(e) => {
                    crate::warn_limited!("virtio-rng: request failed: {e}");
                    (req.head, 0)
                }
            },
            Err((head, e)) => {
                crate::warn_limited!("virtio-rng: bad descriptor chain: {e}");
                (head, 0)
            }
        };
        completed += usize::from(complete(queue, mem, head, len));
    }
    Ok(completed)
}

/// The activated device: owns its queue.
pub struct RngWorker {
    mem: GuestMemory,
    queue: Queue,
    evt: EventFd,
    interrupt: Arc<Interrupt>,
}

impl RngWorker {
    /// A worker over `queue`.
    pub fn new(mem: GuestMemory, queue: Queue, evt: EventFd, interrupt: Arc<Interrupt>) -> Self {
        RngWorker {
            mem,
            queue,
            evt,
            interrupt,
        }
    }
}

impl EventSubscriber for RngWorker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(self.evt.as_raw_fd(), 0, EventSet::IN) {
            crate::warn_limited!("virtio-rng: cannot watch queue: {e}");
        }
    }

    fn process(&mut self, _token: u32, _events: EventSet, ops: &mut EventOps) {
        let _ = self.evt.read();
        match process_queue(&self.mem, &mut self.queue, &mut getrandom) {
            Ok(0) => {}
            Ok(_) => self.interrupt.signal_used_queue(),
            Err(e) => {
                crate::warn_limited!("virtio-rng: queue corrupt ({e}); device marked broken");
                ops.remove(self.evt.as_raw_fd());
                self.interrupt.mark_broken();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::test_utils::*;
    use vm_memory::{Bytes, GuestAddress};

    fn pattern(buf: &mut [u8]) -> io::Result<()> {
        buf.fill(0x5a);
        Ok(())
    }

    #[test]
    fn rng_fills_writable_buffers_and_reports_length() {
        let mem = test_mem();
        let mut q = queue_with(
            &mem,
            16,
            &[
                desc(0x10_0000, 100, F_WRITE | F_NEXT, 1),
                desc(0x20_0000, 28, F_WRITE, 0),
            ],
        );
        assert_eq!(process_queue(&mem, &mut q, &mut pattern).unwrap(), 1);
        assert_eq!(used_elem(&mem, &q, 0), (0, 128));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_001b)).unwrap(), 0x5a);
    }

    #[test]
    fn rng_refuses_device_readable_buffers_without_writing() {
        let mem = test_mem();
        let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 64, 0, 0)]);
        assert_eq!(process_queue(&mem, &mut q, &mut pattern).unwrap(), 1);
        assert_eq!(used_elem(&mem, &q, 0), (0, 0));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0);
    }

    #[test]
    fn rng_caps_a_huge_request() {
        let mem = test_mem();
        let mut q = queue_with(
            &mem,
            16,
            &[
                desc(0x10_0000, 0xffff_ffff, F_WRITE, 0),
                desc(0x10_0000, 0x80_0000, F_WRITE, 0),
            ],
        );
        q.set_next_avail(0);
        assert_eq!(process_queue(&mem, &mut q, &mut pattern).unwrap(), 2);
        assert_eq!(used_elem(&mem, &q, 0), (0, 0));
        assert_eq!(used_elem(&mem, &q, 1), (1, MAX_BYTES_PER_REQUEST as u32));
    }

    #[test]
    fn rng_reports_a_corrupt_avail_index() {
        let mem = test_mem();
        let mut q = queue_with(&mem, 16, &[desc(0x10_0000, 8, F_WRITE, 0)]);
        mem.write_obj::<u16>(100, GuestAddress(q.avail_ring() + 2)).unwrap();
        assert!(process_queue(&mem, &mut q, &mut pattern).is_err());
    }

    #[test]
    fn getrandom_fills_the_buffer() {
        let mut a = [0u8; 64];
        getrandom(&mut a).unwrap();
        assert_ne!(a, [0u8; 64]);
    }
    use virtio_queue::QueueT;
}
