//! The backend's framing: `u32` big-endian length, then the frame. Both directions
//! are buffered and bounded, so a slow guest or a slow backend stalls its own
//! direction instead of growing memory.

use std::io::{self, Read, Write};

use super::MAX_FRAME_LEN;

/// Most bytes waiting to go to the backend (frames from the guest).
pub const MAX_PENDING_OUT: usize = 1 << 20;
/// Bytes read from the backend at once.
const READ_CHUNK: usize = 64 * 1024;

/// Why the backend stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// the backend announced a frame larger than any hull accepts
    #[error("the network backend sent a {0}-byte frame")]
    TooLarge(usize),
    /// the backend closed the stream
    #[error("the network backend closed the connection")]
    Closed,
    /// reading or writing the stream failed
    #[error("network backend: {0}")]
    Io(#[from] io::Error),
}

/// Frames from the backend, parsed out of the stream.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// Reads what `source` has (it is non-blocking); `Ok(false)` when it had nothing.
    pub fn fill(&mut self, source: &mut impl Read) -> Result<bool, FrameError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        if self.buf.len() - self.start >= 4 + MAX_FRAME_LEN {
            return Ok(false); // a whole frame is waiting for an RX buffer
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let read = source.read(&mut self.buf[old..]);
        match read {
            Ok(0) => {
                self.buf.truncate(old);
                Err(FrameError::Closed)
            }
            Ok(n) => {
                self.buf.truncate(old + n);
                Ok(true)
            }
            Err(e) => {
                self.buf.truncate(old);
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
                    _ => Err(e.into()),
                }
            }
        }
    }

    /// Appends raw stream bytes (tests, and callers that read themselves).
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered; an oversized length is an error.
    pub fn peek(&self) -> Result<Option<&[u8]>, FrameError> {
        let data = &self.buf[self.start..];
        let Some(len) = data.get(..4) else { return Ok(None) };
        let len = u32::from_be_bytes(len.try_into().expect("four bytes")) as usize;
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge(len));
        }
        Ok(data.get(4..4 + len))
    }

    /// Drops the frame [`peek`](Self::peek) returned.
    pub fn consume(&mut self) {
        if let Ok(Some(frame)) = self.peek() {
            self.start += 4 + frame.len();
        }
        if self.start > READ_CHUNK && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

/// How long a frame the backend took in part may take to finish.
const FINISH_FRAME: std::time::Duration = std::time::Duration::from_secs(2);

/// Frames for the backend, waiting for the stream to take them.
///
/// A frame the stream took in part is always finished before `flush` returns:
/// passt reads the length prefix and the frame body separately, and a stream that
/// stops inside a length prefix would be misread from then on.
#[derive(Default)]
pub struct FrameWriter {
    frames: std::collections::VecDeque<Vec<u8>>,
    /// Bytes of the front frame already written.
    written: usize,
    pending: usize,
}

impl FrameWriter {
    /// Whether a frame of `len` bytes fits.
    pub fn has_room(&self, len: usize) -> bool {
        self.pending + 4 + len <= MAX_PENDING_OUT
    }

    /// Bytes not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Queues `frame` with its length prefix.
    pub fn push(&mut self, frame: &[u8]) {
        let mut bytes = Vec::with_capacity(4 + frame.len());
        bytes.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        bytes.extend_from_slice(frame);
        self.pending += bytes.len();
        self.frames.push_back(bytes);
    }

    /// Writes whole frames while `sink` (non-blocking) takes them; returns whether
    /// all went.
    pub fn flush(&mut self, sink: &mut impl Write) -> Result<bool, FrameError> {
        let mut deadline = None;
        while let Some(front) = self.frames.front() {
            match sink.write(&front[self.written..]) {
                Ok(0) => return Err(FrameError::Closed),
                Ok(n) => {
                    self.written += n;
                    self.pending -= n;
                    if self.written == front.len() {
                        self.frames.pop_front();
                        self.written = 0;
                        deadline = None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.written == 0 {
                        return Ok(false); // at a frame boundary: wait for the stream
                    }
                    let until = *deadline.get_or_insert_with(|| std::time::Instant::now() + FINISH_FRAME);
                    if std::time::Instant::now() >= until {
                        return Err(FrameError::Io(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the backend stopped reading in the middle of a frame",
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// All queued bytes, in order (tests).
    pub fn queued(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pending);
        for (i, f) in self.frames.iter().enumerate() {
            out.extend_from_slice(if i == 0 { &f[self.written..] } else { f });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_out_of_a_stream_in_any_pieces() {
        let mut stream = Vec::new();
        for frame in [&b"first"[..], b"", b"third frame"] {
            stream.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            stream.extend_from_slice(frame);
        }
        for split in 0..stream.len() {
            let mut r = FrameReader::default();
            r.push(&stream[..split]);
            let mut got = Vec::new();
            while let Some(f) = r.peek().unwrap() {
                got.push(f.to_vec());
                r.consume();
            }
            r.push(&stream[split..]);
            while let Some(f) = r.peek().unwrap() {
                got.push(f.to_vec());
                r.consume();
            }
            assert_eq!(
                got,
                [b"first".to_vec(), vec![], b"third frame".to_vec()],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering_it() {
        let mut r = FrameReader::default();
        r.push(&u32::MAX.to_be_bytes());
        assert!(matches!(r.peek(), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn the_writer_is_bounded_and_never_stops_inside_a_frame() {
        let mut w = FrameWriter::default();
        assert!(w.has_room(1500));
        w.push(b"abc");
        w.push(b"de");
        assert_eq!(w.queued(), b"\0\0\0\x03abc\0\0\0\x02de");
        /// Takes two bytes per write, and refuses every other write.
        struct Stingy {
            got: Vec<u8>,
            refuse: bool,
            limit: usize,
        }
        impl Write for Stingy {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.refuse = !self.refuse;
                if self.refuse || self.got.len() >= self.limit {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(2);
                self.got.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // The stream refuses the first write: nothing was taken, so flush returns at
        // the frame boundary; then it takes the first frame only in pieces.
        let mut sink = Stingy {
            got: Vec::new(),
            refuse: false,
            limit: 7,
        };
        assert!(!w.flush(&mut sink).unwrap());
        assert!(sink.got.is_empty());
        assert!(!w.flush(&mut sink).unwrap());
        assert_eq!(sink.got, b"\0\0\0\x03abc", "the first frame, whole");
        while w.has_room(MAX_FRAME_LEN) {
            w.push(&[0u8; MAX_FRAME_LEN]);
        }
        assert!(w.pending() <= MAX_PENDING_OUT);
    }
}
