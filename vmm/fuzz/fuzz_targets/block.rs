//! virtio-blk queue processing over guest memory filled by the fuzzer, against a
//! read-only disk that must stay unchanged.
#![no_main]

mod common;

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use vmm::devices::virtio::block::worker::process_queue;
use vmm::devices::virtio::block::Disk;

fuzz_target!(|data: &[u8]| {
    let mem = common::memory(data);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(&[0x5a; 8192]).unwrap();
    let disk = Disk::open(file.path(), true, "fuzz").unwrap();
    let mut q = common::queue(0);
    let _ = process_queue(&mem, &disk, &mut q);
    assert_eq!(std::fs::read(file.path()).unwrap(), vec![0x5a; 8192]);
});
