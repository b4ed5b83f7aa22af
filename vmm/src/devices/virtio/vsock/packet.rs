//! The vsock packet header (virtio spec 5.10.6) and moving packets through
//! descriptor chains.

use crate::devices::virtio::chain::{read_buffer, write_buffer, Buffer, ChainError};
use crate::memory::GuestMemory;

use super::MAX_PKT_PAYLOAD;

/// Header length on the wire.
pub const HEADER_LEN: usize = 44;
/// Stream sockets: the only type hull supports.
pub const TYPE_STREAM: u16 = 1;

/// Packet operations.
pub mod op {
    #![allow(missing_docs)]
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}

/// SHUTDOWN flag: the sender will receive no more.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more.
pub const SHUTDOWN_SEND: u32 = 2;

/// A vsock packet header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Source context id.
    pub src_cid: u64,
    /// Destination context id.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type.
    pub kind: u16,
    /// Operation.
    pub op: u16,
    /// Operation flags.
    pub flags: u32,
    /// Sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer.
    pub fwd_cnt: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl Header {
    /// Decodes the wire form.
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            src_cid: u64_at(b, 0),
            dst_cid: u64_at(b, 8),
            src_port: u32_at(b, 16),
            dst_port: u32_at(b, 20),
            len: u32_at(b, 24),
            kind: u16::from_le_bytes([b[28], b[29]]),
            op: u16::from_le_bytes([b[30], b[31]]),
            flags: u32_at(b, 32),
            buf_alloc: u32_at(b, 36),
            fwd_cnt: u32_at(b, 40),
        }
    }

    /// Encodes the wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.kind.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Reads `dst.len()` bytes from the device-readable `buffers`, starting `skip` bytes in.
fn gather(mem: &GuestMemory, buffers: &[Buffer], mut skip: usize, dst: &mut [u8]) -> Result<(), ChainError> {
    let mut done = 0;
    for (index, buffer) in buffers.iter().enumerate() {
        if done == dst.len() {
            break;
        }
        if buffer.writable {
            return Err(ChainError::Direction { index });
        }
        let len = buffer.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        done += read_buffer(mem, buffer, skip as u32, &mut dst[done..])?;
        skip = 0;
    }
    if done < dst.len() {
        return Err(ChainError::Malformed {
            reason: "packet shorter than its header says",
        });
    }
    Ok(())
}

/// Reads a TX packet: its header, and its payload into `payload` (which must hold
/// [`MAX_PKT_PAYLOAD`] bytes). Returns the header; the payload is `payload[..len]`.
pub fn read_packet(mem: &GuestMemory, buffers: &[Buffer], payload: &mut [u8]) -> Result<Header, ChainError> {
    let mut raw = [0u8; HEADER_LEN];
    gather(mem, buffers, 0, &mut raw)?;
    let header = Header::from_bytes(&raw);
    let len = header.len as usize;
    if len > MAX_PKT_PAYLOAD || len > payload.len() {
        return Err(ChainError::Malformed {
            reason: "packet payload larger than the maximum",
        });
    }
    gather(mem, buffers, HEADER_LEN, &mut payload[..len])?;
    Ok(header)
}

/// Space for a packet in an RX chain; refuses chains with device-readable buffers.
pub fn rx_capacity(buffers: &[Buffer]) -> Result<usize, ChainError> {
    if let Some(index) = buffers.iter().position(|b| !b.writable) {
        return Err(ChainError::Direction { index });
    }
    Ok(buffers.iter().map(|b| b.len as usize).sum())
}

/// Scatters `bytes` into the device-writable `buffers` starting `skip` bytes in.
fn scatter(mem: &GuestMemory, buffers: &[Buffer], mut skip: usize, bytes: &[u8]) -> Result<(), ChainError> {
    let mut done = 0;
    for buffer in buffers {
        if done == bytes.len() {
            break;
        }
        let len = buffer.len as usize;
        if skip >= len {
            skip -= len;
            continue;
        }
        done += write_buffer(mem, buffer, skip as u32, &bytes[done..])?;
        skip = 0;
    }
    if done < bytes.len() {
        return Err(ChainError::Malformed {
            reason: "rx buffers too small",
        });
    }
    Ok(())
}

/// Writes a packet into an RX chain; returns the used length.
pub fn write_packet(mem: &GuestMemory, buffers: &[Buffer], header: &Header, payload: &[u8]) -> Result<u32, ChainError> {
    scatter(mem, buffers, 0, &header.to_bytes())?;
    scatter(mem, buffers, HEADER_LEN, payload)?;
    Ok((HEADER_LEN + payload.len()) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::chain::test_utils::test_mem;
    use vm_memory::GuestAddress;

    fn buf(addr: u64, len: u32, writable: bool) -> Buffer {
        Buffer {
            addr: GuestAddress(addr),
            len,
            writable,
        }
    }

    #[test]
    fn header_round_trips_through_bytes() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 10,
            dst_port: 20,
            len: 5,
            kind: 1,
            op: 5,
            flags: 2,
            buf_alloc: 9,
            fwd_cnt: 8,
        };
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
    }

    #[test]
    fn packet_written_across_buffers_reads_back() {
        let mem = test_mem();
        let h = Header {
            len: 6,
            op: op::RW,
            ..Default::default()
        };
        let rx = [buf(0x1000, 10, true), buf(0x2000, 40, true), buf(0x3000, 100, true)];
        assert_eq!(write_packet(&mem, &rx, &h, b"abcdef").unwrap(), 50);
        let tx: Vec<Buffer> = rx.iter().map(|b| Buffer { writable: false, ..*b }).collect();
        let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
        assert_eq!(read_packet(&mem, &tx, &mut payload).unwrap(), h);
        assert_eq!(&payload[..6], b"abcdef");
    }

    #[test]
    fn read_packet_refuses_bad_lengths_and_directions() {
        let mem = test_mem();
        let mut payload = vec![0u8; MAX_PKT_PAYLOAD];
        for len in [u32::MAX, MAX_PKT_PAYLOAD as u32 + 1, 100] {
            let h = Header {
                len,
                ..Default::default()
            };
            vm_memory::Bytes::write_slice(&mem, &h.to_bytes(), GuestAddress(0x1000)).unwrap();
            let err = read_packet(&mem, &[buf(0x1000, 44, false), buf(0x2000, 50, false)], &mut payload);
            assert!(err.is_err(), "len {len}");
        }
        let err = read_packet(&mem, &[buf(0x1000, 44, true)], &mut payload).unwrap_err();
        assert_eq!(err, ChainError::Direction { index: 0 });
        assert!(read_packet(&mem, &[buf(0x1000, 20, false)], &mut payload).is_err());
    }

    #[test]
    fn rx_capacity_refuses_readable_buffers() {
        assert_eq!(rx_capacity(&[buf(0, 10, true), buf(0, 5, true)]).unwrap(), 15);
        assert!(rx_capacity(&[buf(0, 10, true), buf(0, 5, false)]).is_err());
    }
}
