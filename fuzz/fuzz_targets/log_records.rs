#![no_main]
//! A container log as `hull logs` reads it: the file is written by the monitor, but
//! its bytes are the guest's and the file may be torn or damaged. Read whole and
//! followed as it grows, it gives the same records, which re-encode to a prefix of
//! the input; lines keep every byte of each stream.

use std::io::Write;

use hull::container::logs::{encode_record, lines, read_records, Follower, LogStream, MAX_RECORD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let records = read_records(data).expect("reading from memory cannot fail");
    let mut encoded = Vec::new();
    for rec in &records {
        assert!(rec.data.len() <= MAX_RECORD as usize);
        let nanos = rec.time.timestamp_nanos_opt().expect("times come from i64 nanoseconds");
        encoded.extend(encode_record(rec.stream, nanos, &rec.data));
    }
    assert!(data.starts_with(&encoded), "records are not a prefix of the log");

    let all_lines = lines(&records);
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        let bytes: Vec<u8> = records
            .iter()
            .filter(|r| r.stream == stream)
            .flat_map(|r| r.data.iter().copied())
            .collect();
        let ours: Vec<&hull::container::logs::Line> = all_lines.iter().filter(|l| l.stream == stream).collect();
        let joined: Vec<u8> = ours.iter().flat_map(|l| l.data.iter().copied()).collect();
        assert_eq!(bytes, joined, "lines lost or added bytes");
        for line in ours.iter().rev().skip(1) {
            assert!(line.data.ends_with(b"\n") && line.data.iter().filter(|&&b| b == b'\n').count() == 1);
        }
    }

    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("container.log");
    let Ok(mut file) = std::fs::File::create(&path) else {
        return;
    };
    let Ok(mut follower) = Follower::at_end(&path) else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    assert_eq!(follower.poll().expect("poll"), records, "follower and reader disagree");
});
