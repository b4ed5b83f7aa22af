//! The socket between a container's monitor and a `hull` command attached to it
//! (`run` without `-d`, `start -a`): output and the exit code one way, input,
//! terminal sizes and signals the other.
//!
//! Frames: `kind: u8`, `len: u32` LE, payload of at most [`MAX_FRAME`] bytes.

use std::io::{self, Read, Write};

pub const MAX_FRAME: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Monitor to client.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Why the process could not start, before its `Exit`.
    Error(String),
    Exit(i32),
    /// Client to monitor.
    Stdin(Vec<u8>),
    StdinClosed,
    Resize {
        rows: u16,
        cols: u16,
    },
    Signal(i32),
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Frame::Stdout(d) => (1, d.clone()),
            Frame::Stderr(d) => (2, d.clone()),
            Frame::Error(m) => (3, m.as_bytes().to_vec()),
            Frame::Exit(c) => (4, c.to_le_bytes().to_vec()),
            Frame::Stdin(d) => (5, d.clone()),
            Frame::StdinClosed => (6, Vec::new()),
            Frame::Resize { rows, cols } => (7, [rows.to_le_bytes(), cols.to_le_bytes()].concat()),
            Frame::Signal(s) => (8, s.to_le_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.encode())
    }

    /// Reads one frame; `Ok(None)` at a clean end of stream.
    pub fn read(r: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut header = [0u8; 5];
        match r.read(&mut header[..1])? {
            0 => return Ok(None),
            _ => r.read_exact(&mut header[1..])?,
        }
        let len = u32::from_le_bytes(header[1..5].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            return Err(invalid(format!("attach frame of {len} bytes")));
        }
        let mut p = vec![0u8; len as usize];
        r.read_exact(&mut p)?;
        let int = |p: &[u8]| -> io::Result<i32> {
            Ok(i32::from_le_bytes(
                p.try_into().map_err(|_| invalid("bad integer frame".into()))?,
            ))
        };
        Ok(Some(match header[0] {
            1 => Frame::Stdout(p),
            2 => Frame::Stderr(p),
            3 => Frame::Error(String::from_utf8_lossy(&p).into_owned()),
            4 => Frame::Exit(int(&p)?),
            5 => Frame::Stdin(p),
            6 => Frame::StdinClosed,
            7 => match p[..] {
                [r0, r1, c0, c1] => Frame::Resize {
                    rows: u16::from_le_bytes([r0, r1]),
                    cols: u16::from_le_bytes([c0, c1]),
                },
                _ => return Err(invalid(format!("resize frame of {} bytes", p.len()))),
            },
            8 => Frame::Signal(int(&p)?),
            k => return Err(invalid(format!("unknown attach frame kind {k}"))),
        }))
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Stdout(b"out".to_vec()),
            Frame::Stderr(vec![0, 255]),
            Frame::Error("exec: nope".into()),
            Frame::Exit(137),
            Frame::Stdin(vec![]),
            Frame::StdinClosed,
            Frame::Resize { rows: 24, cols: 80 },
            Frame::Signal(15),
        ];
        let mut buf = Vec::new();
        for f in &frames {
            f.write(&mut buf).unwrap();
        }
        let mut r = &buf[..];
        for f in &frames {
            assert_eq!(Frame::read(&mut r).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read(&mut r).unwrap(), None);
    }

    #[test]
    fn oversized_and_unknown_frames_are_errors() {
        let mut big = vec![1u8];
        big.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Frame::read(&mut &big[..]).is_err());
        assert!(Frame::read(&mut &[99u8, 0, 0, 0, 0][..]).is_err());
        assert!(Frame::read(&mut &[4u8, 1, 0, 0, 0, 7][..]).is_err());
    }

    #[test]
    fn resize_frame_of_wrong_length_is_named_as_a_resize() {
        let err = Frame::read(&mut &[7u8, 3, 0, 0, 0, 1, 2, 3][..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "resize frame of 3 bytes");
    }

    proptest::proptest! {
        /// Whatever a peer sends, a decoded frame encodes back to a frame that decodes
        /// to itself, and the reader consumed no more than the frame it returned.
        #[test]
        fn arbitrary_bytes_decode_to_frames_that_round_trip(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let mut r = &bytes[..];
            while let Ok(Some(frame)) = Frame::read(&mut r) {
                let encoded = frame.encode();
                proptest::prop_assert!(encoded.len() <= 5 + MAX_FRAME as usize);
                proptest::prop_assert_eq!(Frame::read(&mut &encoded[..]).unwrap(), Some(frame));
            }
        }
    }
}
