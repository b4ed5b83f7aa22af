//! virtio-blk queue processing: parse each request, do the I/O on the disk file,
//! write the status byte. Every failure is a status, never a panic.

use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::Bytes;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

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

/// Outcome of one request: status byte and bytes written into guest data buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// virtio-blk status.
    pub status: u8,
    /// Data bytes written to the guest.
    pub written: u32,
}

impl Outcome {
    fn status(status: u8) -> Self {
        Outcome { status, written: 0 }
    }
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
                .map_err(|e| crate::warn_limited!("virtio-blk: read failed: {e}"))?;
            write_buffer(mem, buffer, done, &chunk[..n]).map_err(|_| ())?;
            (done, offset, written) = (done + n as u32, offset + n as u64, written + n as u32);
        }
    }
    Ok(written)
}

fn do_write(mem: &GuestMemory, disk: &Disk, mut offset: u64, data: &[Buffer]) -> Result<(), ()> {
    let mut chunk = vec![0u8; COPY_CHUNK];
    for buffer in data {
        let mut done = 0u32;
        while done < buffer.len {
            let n = read_buffer(mem, buffer, done, &mut chunk).map_err(|_| ())?;
            disk.write_at(&chunk[..n], offset)
                .map_err(|e| crate::warn_limited!("virtio-blk: write failed: {e}"))?;
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
        let status = if do_write(mem, disk, offset, data).is_ok() {
            VIRTIO_BLK_S_OK
        } else {
            VIRTIO_BLK_S_IOERR
        };
        return Outcome::status(status);
    }
    match do_read(mem, disk, offset, data) {
        Ok(written) => Outcome {
            status: VIRTIO_BLK_S_OK,
            written,
        },
        Err(()) => Outcome::status(VIRTIO_BLK_S_IOERR),
    }
}

fn get_id(mem: &GuestMemory, disk: &Disk, data: &[Buffer]) -> Outcome {
    match data {
        [buffer] if buffer.writable => match write_buffer(mem, buffer, 0, disk.id()) {
            Ok(n) => Outcome {
                status: VIRTIO_BLK_S_OK,
                written: n as u32,
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
            Err(_) => Outcome::status(VIRTIO_BLK_S_IOERR),
        },
        VIRTIO_BLK_T_GET_ID => get_id(mem, disk, data),
        other => {
            crate::warn_limited!("virtio-blk: unsupported request type {other}");
            Outcome::status(VIRTIO_BLK_S_UNSUPP)
        }
    }
}

/// Serves one request; returns the used length (data written plus the status byte).
pub fn serve_request(mem: &GuestMemory, disk: &Disk, req: &Request) -> u32 {
    let Some((status, rest)) = req.buffers.split_last() else {
        return 0;
    };
    if !status.writable || status.len == 0 || rest.is_empty() {
        crate::warn_limited!("virtio-blk: request without a usable status buffer");
        return 0;
    }
    let outcome = match read_header(mem, &rest[0]) {
        Ok(header) => execute(mem, disk, header, &rest[1..]),
        Err(e) => {
            crate::warn_limited!("virtio-blk: {e}");
            Outcome::status(VIRTIO_BLK_S_IOERR)
        }
    };
    if write_buffer(mem, status, 0, &[outcome.status]).is_err() {
        return 0;
    }
    outcome.written.saturating_add(1)
}

/// Serves every pending request. Returns how many completed, or `Err` when the ring
/// itself is corrupt.
pub fn process_queue(mem: &GuestMemory, disk: &Disk, queue: &mut Queue) -> Result<usize, virtio_queue::Error> {
    let mut completed = 0;
    while let Some(popped) = pop_request(queue, mem)? {
        let (head, len) = match popped {
            Ok(req) => (req.head, serve_request(mem, disk, &req)),
            Err((head, e)) => {
                crate::warn_limited!("virtio-blk: bad descriptor chain: {e}");
                (head, 0)
            }
        };
        completed += usize::from(complete(queue, mem, head, len));
    }
    Ok(completed)
}

/// The activated device: owns the disk and the queue.
pub struct BlockWorker {
    disk: Disk,
    mem: GuestMemory,
    queue: Queue,
    evt: EventFd,
    interrupt: Arc<Interrupt>,
}

impl BlockWorker {
    /// A worker serving `queue` from `disk`.
    pub fn new(disk: Disk, mem: GuestMemory, queue: Queue, evt: EventFd, interrupt: Arc<Interrupt>) -> Self {
        BlockWorker {
            disk,
            mem,
            queue,
            evt,
            interrupt,
        }
    }
}

impl EventSubscriber for BlockWorker {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(self.evt.as_raw_fd(), 0, EventSet::IN) {
            crate::warn_limited!("virtio-blk: cannot watch queue: {e}");
        }
    }

    fn process(&mut self, _token: u32, _events: EventSet, ops: &mut EventOps) {
        let _ = self.evt.read();
        match process_queue(&self.mem, &self.disk, &mut self.queue) {
            Ok(0) => {}
            Ok(_) => self.interrupt.signal_used_queue(),
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
