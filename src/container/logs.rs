//! A container's output log: what its main process wrote to stdout and stderr, with
//! the time of each chunk, kept apart by stream and byte-exact (binary output stays
//! intact, unlike a JSON log).
//!
//! Format: records of `stream: u8` (1 stdout, 2 stderr), `time: i64` LE (ns since
//! the epoch), `len: u32` LE, then `len` bytes. The log is capped: when the file
//! would pass [`MAX_FILE`] it is rotated to `container.log.1` (the older one is
//! dropped), so a workload flooding its output uses at most twice that on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// Largest log file before rotation.
pub const MAX_FILE: u64 = 8 << 20;
/// Largest record; the monitor writes at most 32 KiB at a time.
pub const MAX_RECORD: u32 = 1 << 20;
const HEADER: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout = 1,
    Stderr = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: LogStream,
    pub time: DateTime<Utc>,
    pub data: Vec<u8>,
}

pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max: u64,
    /// Bytes of records this writer discarded: the older file it rotated over.
    dropped: u64,
}

fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

impl LogWriter {
    pub fn open(path: &Path) -> io::Result<LogWriter> {
        Self::with_limit(path, MAX_FILE)
    }

    pub fn with_limit(path: &Path, max: u64) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            file,
            size,
            max,
            dropped: 0,
        })
    }

    /// Bytes of output discarded so far by rotation (headers included).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn write(&mut self, stream: LogStream, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(MAX_RECORD as usize) {
            let len = (HEADER + chunk.len()) as u64;
            if self.size > 0 && self.size + len > self.max {
                self.dropped += fs::metadata(rotated(&self.path)).map_or(0, |m| m.len());
                fs::rename(&self.path, rotated(&self.path))?;
                self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
                self.size = 0;
            }
            let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0);
            self.file.write_all(&encode_record(stream, nanos, chunk))?;
            self.size += len;
        }
        Ok(())
    }
}

/// One record as stored: stream, time in ns since the epoch, length, bytes. `data` is
/// at most [`MAX_RECORD`] bytes (the writer splits longer output).
pub fn encode_record(stream: LogStream, nanos: i64, data: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER + data.len());
    record.push(stream as u8);
    record.extend_from_slice(&nanos.to_le_bytes());
    record.extend_from_slice(&(data.len() as u32).to_le_bytes());
    record.extend_from_slice(data);
    record
}

/// Every complete record of a log stream, up to its end or its first torn or
/// malformed record.
pub fn read_records(r: impl Read) -> io::Result<Vec<Record>> {
    let mut r = BufReader::new(r);
    let mut records = Vec::new();
    while let Some(rec) = read_record(&mut r)? {
        records.push(rec);
    }
    Ok(records)
}

/// Reads one record; `None` at the end or at a torn (partly written) record.
fn read_record(r: &mut impl Read) -> io::Result<Option<Record>> {
    let mut header = [0u8; HEADER];
    if !read_exact_or_eof(r, &mut header)? {
        return Ok(None);
    }
    let stream = match header[0] {
        1 => LogStream::Stdout,
        2 => LogStream::Stderr,
        _ => return Ok(None),
    };
    let nanos = i64::from_le_bytes(header[1..9].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(header[9..13].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Ok(None);
    }
    let mut data = vec![0u8; len as usize];
    if !read_exact_or_eof(r, &mut data)? {
        return Ok(None);
    }
    Ok(Some(Record {
        stream,
        time: DateTime::from_timestamp_nanos(nanos),
        data,
    }))
}

fn read_exact_or_eof(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Every record still kept, oldest first.
pub fn read_all(path: &Path) -> io::Result<Vec<Record>> {
    let mut records = Vec::new();
    for p in [rotated(path), path.to_owned()] {
        let file = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        records.extend(read_records(file)?);
    }
    Ok(records)
}

/// Follows a log as it grows, across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    pos: u64,
}

impl Follower {
    /// Starts at the current end of the log.
    pub fn at_end(path: &Path) -> io::Result<Follower> {
        let mut f = Follower {
            path: path.to_owned(),
            file: None,
            inode: 0,
            pos: 0,
        };
        if let Ok(file) = File::open(path) {
            f.inode = file.metadata()?.ino();
            f.pos = file.metadata()?.len();
            f.file = Some(file);
        }
        Ok(f)
    }

    /// The complete records written since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        let current = match fs::metadata(&self.path) {
            Ok(m) => m.ino(),
            Err(_) => return Ok(out),
        };
        if self.file.is_none() || current != self.inode {
            // Rotated (or created): the old file was drained above.
            self.file = Some(File::open(&self.path)?);
            self.inode = current;
            self.pos = 0;
            self.drain(&mut out)?;
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<Record>) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else { return Ok(()) };
        file.seek(SeekFrom::Start(self.pos))?;
        let mut r = BufReader::new(&mut *file);
        let mut consumed = 0u64;
        while let Some(rec) = read_record(&mut r)? {
            consumed += (HEADER + rec.data.len()) as u64;
            out.push(rec);
        }
        self.pos += consumed;
        Ok(())
    }
}

/// One line of output (it keeps its `\n`; the last one of a stream may lack it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub stream: LogStream,
    /// When the line's first byte was written.
    pub time: DateTime<Utc>,
    pub data: Vec<u8>,
}

/// Splits records into lines, joining a line that spans records of its stream.
pub fn lines(records: &[Record]) -> Vec<Line> {
    let mut out = Vec::new();
    let mut pending: [Option<Line>; 2] = [None, None];
    for rec in records {
        let slot = &mut pending[rec.stream as usize - 1];
        let mut rest = &rec.data[..];
        while !rest.is_empty() {
            let end = rest.iter().position(|&b| b == b'\n').map(|i| i + 1);
            let piece = &rest[..end.unwrap_or(rest.len())];
            let line = slot.get_or_insert_with(|| Line {
                stream: rec.stream,
                time: rec.time,
                data: Vec::new(),
            });
            line.data.extend_from_slice(piece);
            if end.is_some() {
                out.extend(slot.take());
            }
            rest = &rest[piece.len()..];
        }
    }
    out.extend(pending.into_iter().flatten());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path).unwrap();
        let binary: Vec<u8> = (0..=255).collect();
        w.write(LogStream::Stdout, b"hello\n").unwrap();
        w.write(LogStream::Stderr, &binary).unwrap();
        let all = read_all(&path).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].data, b"hello\n");
        assert_eq!(all[1].stream, LogStream::Stderr);
        assert_eq!(all[1].data, binary);
    }

    #[test]
    fn flood_is_capped_by_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::with_limit(&path, 64 * 1024).unwrap();
        for _ in 0..1000 {
            w.write(LogStream::Stdout, &[b'x'; 1000]).unwrap();
        }
        let total = fs::metadata(&path).unwrap().len() + fs::metadata(rotated(&path)).unwrap().len();
        assert!(total <= 2 * 64 * 1024, "{total}");
        let kept = read_all(&path).unwrap();
        assert!(!kept.is_empty() && kept.len() < 1000);
        // What rotation discarded is counted: written = kept + dropped.
        let written = 1000 * (HEADER as u64 + 1000);
        assert_eq!(w.dropped() + total, written);
    }

    #[test]
    fn torn_tail_and_garbage_end_the_log_quietly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path).unwrap();
        w.write(LogStream::Stdout, b"ok\n").unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255]).unwrap();
        assert_eq!(read_all(&path).unwrap().len(), 1);
    }

    #[test]
    fn follower_sees_new_records_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::with_limit(&path, 100).unwrap();
        w.write(LogStream::Stdout, b"before\n").unwrap();
        let mut f = Follower::at_end(&path).unwrap();
        assert!(f.poll().unwrap().is_empty());
        for i in 0..10 {
            w.write(LogStream::Stdout, format!("line {i:02} padded out\n").as_bytes())
                .unwrap();
        }
        let got: Vec<Vec<u8>> = f.poll().unwrap().into_iter().map(|r| r.data).collect();
        // Each record is 13 + 21 bytes: the file rotates every two records, and the
        // follower drains the old file before moving on, so it loses only files it
        // never saw (rotated twice between polls).
        assert!(got.last().unwrap().starts_with(b"line 09"));
    }

    proptest::proptest! {
        /// Any bytes read as a log give records that re-encode to a prefix of them,
        /// and lines that hold exactly each stream's bytes.
        #[test]
        fn arbitrary_logs_read_as_a_prefix_of_records(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let records = read_records(&bytes[..]).unwrap();
            let mut encoded = Vec::new();
            for rec in &records {
                encoded.extend(encode_record(rec.stream, rec.time.timestamp_nanos_opt().unwrap(), &rec.data));
            }
            proptest::prop_assert!(bytes.starts_with(&encoded));
            for stream in [LogStream::Stdout, LogStream::Stderr] {
                let from_records: Vec<u8> = records.iter().filter(|r| r.stream == stream).flat_map(|r| r.data.clone()).collect();
                let from_lines: Vec<u8> = lines(&records).into_iter().filter(|l| l.stream == stream).flat_map(|l| l.data).collect();
                proptest::prop_assert_eq!(from_records, from_lines);
            }
        }
    }

    #[test]
    fn lines_split_on_newlines_and_join_across_records() {
        let rec = |stream, data: &[u8]| Record {
            stream,
            time: Utc::now(),
            data: data.to_vec(),
        };
        let records = [
            rec(LogStream::Stdout, b"a\nb"),
            rec(LogStream::Stderr, b"e\n"),
            rec(LogStream::Stdout, b"c\nd"),
        ];
        let texts: Vec<(LogStream, Vec<u8>)> = lines(&records).into_iter().map(|l| (l.stream, l.data)).collect();
        assert_eq!(
            texts,
            vec![
                (LogStream::Stdout, b"a\n".to_vec()),
                (LogStream::Stderr, b"e\n".to_vec()),
                (LogStream::Stdout, b"bc\n".to_vec()),
                (LogStream::Stdout, b"d".to_vec()),
            ]
        );
    }
}
