#![no_main]
//! `hull load`: a docker-save or OCI-layout archive (plain, gzip or zstd) loaded into a
//! scratch store. No panic; nothing written beside the store; no staged temp file
//! left behind; a failed load leaves no blob; every published blob and image record
//! is what its digest says.
//!
//! Inputs are bounded (`MAX_INPUT`, and `MAX_UNPACKED` once the whole archive is
//! decompressed) so one input cannot stage gigabytes.

use std::io::Read;
use std::path::Path;

use hull::image::archive::{self, Loaded};
use hull::image::digest::Digest;
use hull::image::store::ImageStore;
use libfuzzer_sys::fuzz_target;

const MAX_INPUT: usize = 32 << 10;
const MAX_UNPACKED: u64 = 4 << 20;

/// Whether the archive, once its outer compression is undone, is small enough.
fn small_enough(data: &[u8]) -> bool {
    let mut decoder: Box<dyn Read + '_> = match data {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(data)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => match zstd::stream::read::Decoder::new(data) {
            Ok(d) => Box::new(d),
            Err(_) => return true,
        },
        _ => return true,
    };
    let n = std::io::copy(&mut decoder.by_ref().take(MAX_UNPACKED + 1), &mut std::io::sink());
    n.map_or(true, |n| n <= MAX_UNPACKED)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT || !small_enough(data) {
        return;
    }
    let Ok(scratch) = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()) else {
        return;
    };
    let root = scratch.path().join("store");
    let Ok(store) = ImageStore::open(&root) else { return };
    let result = archive::load(&store, std::io::Cursor::new(data.to_vec()));

    assert_eq!(names(scratch.path()), ["store"], "written beside the store");
    assert!(names(&store.tmp_dir()).is_empty(), "staged files left in tmp/");
    let blobs = names(&root.join("blobs/sha256"));
    let loaded = match result {
        Ok(loaded) => loaded,
        Err(_) => {
            assert!(blobs.is_empty(), "a failed load published blobs: {blobs:?}");
            return;
        }
    };
    for hex in &blobs {
        let bytes = std::fs::read(root.join("blobs/sha256").join(hex)).expect("published blob reads");
        assert_eq!(&Digest::of(&bytes).hex(), hex, "blob stored under the wrong digest");
    }
    let records = store.records().expect("index reads after a load");
    for record in &records {
        assert!(
            blobs.iter().any(|b| b == record.manifest.digest.hex()),
            "record without its manifest"
        );
        store
            .read_manifest(&record.manifest.digest)
            .expect("a loaded manifest parses");
    }
    for l in &loaded {
        if let Loaded::Tagged(r) = l {
            let name = r.to_string();
            assert!(
                records.iter().any(|rec| rec.name.as_deref() == Some(&name)),
                "{name} not recorded"
            );
        }
    }
});
