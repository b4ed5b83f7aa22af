//! virtio-blk queue processing: parse each request, do the I/O on the disk file,
//! write the status byte. Every failure is a status, never a panic.
//!
//! A write the host's disk has no room for (`ENOSPC`, `EDQUOT`: the writable disk
//! is a sparse file) is not failed: the guest would see an I/O error in the middle
//! of a journal commit and could be left with a file system it cannot mount. The
//! request stays on the ring, the queue waits, and the write is tried again every
//! second until there is room (what QEMU calls `werror=enospc`). The guest sees a
//! slow disk; `hull stop` still ends the VM.

use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use virtio_queue::{Queue, QueueOwnedT};
use vm_memory::Bytes;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::disk::{Disk, SECTOR_SIZE};
use crate::devices::virtio::chain::{
    complete, pop_request, read_buffer, write_buffer, Buffer, ChainError, Request, COPY_CHUNK,
};
use crate::devices::virtio::Interrupt;
use crate::event_loop::{EventOps, EventSubscriber};
use crate::memory::GuestMemory;

/// Request types (virtio spec 5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Get the device serial.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error (also: bad request, out of range, read-only).
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: unsupported request type.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;
const HEADER_LEN: u32 = 16;

/// A parsed request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Request type.
    pub kind: u32,
    /// First sector.
    pub sector: u64,
}

/// How often a write that found the host's disk full is tried again.
pub const NO_SPACE_RETRY: Duration = Duration::from_secs(1);

/// Outcome of one request: status byte and bytes written into guest data buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// virtio-blk status.
    pub status: u8,
    /// Data bytes written to the guest.
    pub written: u32,
    /// The host's disk had no room: the request is not completed but tried again.
    pub no_space: bool,
}

impl Outcome {
    fn status(status: u8) -> Self {
        Outcome {
            status,
            written: 0,
            no_space: false,
        }
    }

    fn no_space() -> Self {
        Outcome {
            no_space: true,
            ..Outcome::status(VIRTIO_BLK_S_IOERR)
        }
    }
}

/// Why a write to the disk file failed.
#[derive(Debug, PartialEq, Eq)]
enum WriteFailure {
    /// The host's file system is full (or the user's quota): worth waiting for.
    NoSpace,
    /// Anything else: an I/O error for the guest.
    Other,
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

fn read_header(mem: &GuestMemory, buffer: &Buffer) -> Result<Header, ChainError> {
    if buffer.writable || buffer.len < HEADER_LEN {
        return Err(ChainError::Malformed {
            reason: "header must be a device-readable 16-byte buffer",
        });
    }
    let kind: u32 = mem.read_obj(buffer.addr).map_err(|_| ChainError::OutOfRange {
        addr: buffer.addr.0,
        len: 4,
    })?;
    let sector: u64 = mem
        .read_obj(vm_memory::GuestAddress(buffer.addr.0 + 8))
        .map_err(|_| ChainError::OutOfRange {
            addr: buffer.addr.0,
            len: 16,
        })?;
    Ok(Header {
        kind: u32::from_le(kind),
        sector: u64::from_le(sector),
    })
}

/// Byte range `sector*512 .. +len` if it lies inside the disk.
fn disk_range(disk: &Disk, sector: u64, len: u64) -> Option<u64> {
    let offset = sector.checked_mul(SECTOR_SIZE)?;
    let end = offset.checked_add(len)?;
    (end <= disk.size()).then_some(offset)
}

fn data_len(data: &[Buffer]) -> u64 {
    data.iter().map(|b| u64::from(b.len)).sum()
}

fn do_read(mem: &GuestMemory, disk: &Disk, mut offset: u64, data: &[Buffer]) -> Result<u32, ()> {
    let mut chunk = vec![0u8; COPY_CHUNK];
    let mut written = 0u32;
    for buffer in data {
        let mut done = 0u32;
        while done < buffer.len {
            let n = (buffer.len - done).min(COPY_CHUNK as u32) as usize;
            disk.read_at(&mut chunk[..n], offset)
                .map_err(|e| crate::warn_limited!("virtio-blk: {}: read at {offset} failed: {e}", disk.label()))?;
            write_buffer(mem, buffer, done, &chunk[..n]).map_err(|_| ())?;
            (done, offset, written) = (done + n as u32, offset + n as u64, written + n as u32);
        }
    }
    Ok(written)
}

fn do_write(mem: &GuestMemory, disk: &Disk, mut offset: u64, data: &[Buffer]) -> Result<(), WriteFailure> {
    let mut chunk = vec![0u8; COPY_CHUNK];
    for buffer in data {
        let mut done = 0u32;
        while done < buffer.len {
            let n = read_buffer(mem, buffer, done, &mut chunk).map_err(|_| WriteFailure::Other)?;
            disk.write_at(&chunk[..n], offset).map_err(|e| {
                if is_no_space(&e) {
                    crate::warn_limited!(
                        "virtio-blk: {}: write at {offset} waits for room on the host: {e}",
                        disk.label()
                    );
                    return WriteFailure::NoSpace;
                }
                crate::warn_limited!("virtio-blk: {}: write at {offset} failed: {e}", disk.label());
                WriteFailure::Other
            })?;
            (done, offset) = (done + n as u32, offset + n as u64);
        }
    }
    Ok(())
}

fn transfer(mem: &GuestMemory, disk: &Disk, header: Header, data: &[Buffer]) -> Outcome {
    let writing = header.kind == VIRTIO_BLK_T_OUT;
    if data.iter().any(|b| b.writable == writing) {
        crate::warn_limited!("virtio-blk: data buffer with the wrong direction");
        return Outcome::status(VIRTIO_BLK_S_IOERR);
    }
    let len = data_len(data);
    let Some(offset) = disk_range(disk, header.sector, len).filter(|_| len % SECTOR_SIZE == 0) else {
        crate::warn_limited!(
            "virtio-blk: request of {len} bytes at sector {} outside the disk",
            header.sector
        );
        return Outcome::status(VIRTIO_BLK_S_IOERR);
    };
    if writing {
        if disk.read_only() {
            crate::warn_limited!("virtio-blk: write to a read-only disk refused");
            return Outcome::status(VIRTIO_BLK_S_IOERR);
        }
        return match do_write(mem, disk, offset, data) {
            Ok(()) => Outcome::status(VIRTIO_BLK_S_OK),
            Err(WriteFailure::NoSpace) => Outcome::no_space(),
            Err(WriteFailure::Other) => Outcome::status(VIRTIO_BLK_S_IOERR),
        };
    }
    match do_read(mem, disk, offset, data) {
        Ok(written) => Outcome {
            written,
            ..Outcome::status(VIRTIO_BLK_S_OK)
        },
        Err(()) => Outcome::status(VIRTIO_BLK_S_IOERR),
    }
}

fn get_id(mem: &GuestMemory, disk: &Disk, data: &[Buffer]) -> Outcome {
    match data {
        [buffer] if buffer.writable => match write_buffer(mem, buffer, 0, disk.id()) {
            Ok(n) => Outcome {
                written: n as u32,
                ..Outcome::status(VIRTIO_BLK_S_OK)
            },
            Err(_) => Outcome::status(VIRTIO_BLK_S_IOERR),
        },
        _ => Outcome::status(VIRTIO_BLK_S_IOERR),
    }
}

/// Executes a request whose header and status buffers were already split off.
pub fn execute(mem: &GuestMemory, disk: &Disk, header: Header, data: &[Buffer]) -> Outcome {
    match header.kind {
        VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => transfer(mem, disk, header, data),
        VIRTIO_BLK_T_FLUSH => match disk.flush() {
            Ok(()) => Outcome::status(VIRTIO_BLK_S_OK),
            // Not retried, even for ENOSPC: after a failed fsync the kernel may have
            // dropped the dirty pages, so a second fsync could succeed with data lost.
            Err(e) => {
                crate::warn_limited!("virtio-blk: {}: flush failed: {e}", disk.label());
                Outcome::status(VIRTIO_BLK_S_IOERR)
            }
        },
        VIRTIO_BLK_T_GET_ID => get_id(mem, disk, data),
        other => {
            crate::warn_limited!("virtio-blk: unsupported request type {other}");
            Outcome::status(VIRTIO_BLK_S_UNSUPP)
        }
    }
}

/// Serves one request; returns the used length (data written plus the status byte),
/// or `None` when it must wait for room on the host (nothing is completed).
pub fn serve_request(mem: &GuestMemory, disk: &Disk, req: &Request) -> Option<u32> {
    let Some((status, rest)) = req.buffers.split_last() else {
        return Some(0);
    };
    if !status.writable || status.len == 0 || rest.is_empty() {
        crate::warn_limited!("virtio-blk: request without a usable status buffer");
        return Some(0);
    }
    let outcome = match read_header(mem, &rest[0]) {
        Ok(header) => execute(mem, disk, header, &rest[1..]),
        Err(e) => {
            crate::warn_limited!("virtio-blk: {e}");
            Outcome::status(VIRTIO_BLK_S_IOERR)
        }
    };
    if outcome.no_space {
        return None;
    }
    if write_buffer(mem, status, 0, &[outcome.status]).is_err() {
        return Some(0);
    }
    Some(outcome.written.saturating_add(1))
}

/// What one pass over the queue did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests completed.
    pub completed: usize,
    /// The pass stopped at a request that waits for room on the host; it is still
    /// on the ring, first in line.
    pub waiting_for_space: bool,
}

/// Serves pending requests in order until the ring is empty or a request must wait
/// for room on the host. `Err` when the ring itself is corrupt.
pub fn process_queue(mem: &GuestMemory, disk: &Disk, queue: &mut Queue) -> Result<Served, virtio_queue::Error> {
    let mut served = Served::default();
    while let Some(popped) = pop_request(queue, mem)? {
        let (head, len) = match popped {
            Ok(req) => match serve_request(mem, disk, &req) {
                Some(len) => (req.head, len),
                None => {
                    queue.go_to_previous_position();
                    served.waiting_for_space = true;
                    break;
                }
            },
            Err((head, e)) => {
                crate::warn_limited!("virtio-blk: bad descriptor chain: {e}");
                (head, 0)
            }
        };
        served.completed += usize::from(complete(queue, mem, head, len));
    }
    Ok(served)
}

/// Event tokens of the worker.
const QUEUE_TOKEN: u32 = 0;
const RETRY_TOKEN: u32 = 1;

/// The activated device: owns the disk and the queue.
pub struct BlockWorker {
    disk: Disk,
    mem: GuestMemory,
    queue: Queue,
    evt: EventFd,
    interrupt: Arc<Interrupt>,
    /// Fires while a write waits for room on the host (`None`: the retry then comes
    /// with the guest's next notification only).
    retry: Option<TimerFd>,
}

impl BlockWorker {
    /// A worker serving `queue` from `disk`; `retry` is its timer for writes that
    /// wait for room.
    pub fn new(
        disk: Disk,
        mem: GuestMemory,
        queue: Queue,
        evt: EventFd,
        interrupt: Arc<Interrupt>,
        retry: Option<TimerFd>,
    ) -> Self {
        BlockWorker {
            disk,
            mem,
            queue,
            evt,
            interrupt,
            retry,
        }
    }

    fn arm_retry(&mut self) {
        if let Some(timer) = &mut self.retry {
            if let Err(e) = timer.reset(NO_SPACE_RETRY, None) {
                crate::warn_limited!("virtio-blk: {}: cannot arm the retry timer: {e}", self.disk.label());
            }
        }
    }
}

impl EventSubscriber for BlockWorker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(self.evt.as_raw_fd(), QUEUE_TOKEN, EventSet::IN) {
            crate::warn_limited!("virtio-blk: cannot watch queue: {e}");
        }
        if let Some(timer) = &self.retry {
            if let Err(e) = ops.add(timer.as_raw_fd(), RETRY_TOKEN, EventSet::IN) {
                crate::warn_limited!("virtio-blk: cannot watch the retry timer: {e}");
            }
        }
    }

    fn process(&mut self, token: u32, _events: EventSet, ops: &mut EventOps) {
        match (token, &mut self.retry) {
            (RETRY_TOKEN, Some(timer)) => {
                let _ = timer.wait();
            }
            _ => {
                let _ = self.evt.read();
            }
        }
        match process_queue(&self.mem, &self.disk, &mut self.queue) {
            Ok(served) => {
                if served.completed > 0 {
                    self.interrupt.signal_used_queue();
                }
                if served.waiting_for_space {
                    self.arm_retry();
                }
            }
            Err(e) => {
                crate::warn_limited!("virtio-blk: queue corrupt ({e}); device marked broken");
                ops.remove(self.evt.as_raw_fd());
                self.interrupt.mark_broken();
            }
        }
    }
}

#[cfg(test)]
mod tests;
