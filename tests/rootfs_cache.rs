//! The rootfs cache: one build per chain id, atomic publication, safe directories.

mod rootfs_support;

use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Barrier};

use hull::rootfs::{chain_id, error_chain, Compression, FlattenError, Limits, RootfsCache};
use rootfs_support::*;

fn two_layers() -> [Vec<u8>; 2] {
    let mut entries = vec![dir("usr", 0o755)];
    for i in 0..500 {
        entries.push(file(&format!("usr/f{i}"), &vec![i as u8; 4096 + i], 0o644));
    }
    [
        layer(&entries),
        layer(&[whiteout("usr/.wh.f7"), file("etc/hostname", b"box", 0o644)]),
    ]
}

#[test]
fn ten_concurrent_callers_get_one_image_built_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_layers(dir.path(), &two_layers(), Compression::Gzip);
    let cache = Arc::new(RootfsCache::new(dir.path().join("rootfs"), Limits::default()));
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (cache, barrier, inputs) = (cache.clone(), barrier.clone(), inputs.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let built = cache.ensure(&inputs).unwrap_or_else(|e| panic!("{}", error_chain(&e)));
                // A second build would have renamed a new file over the first.
                let ino = std::fs::metadata(&built.path).unwrap().ino();
                (built, ino)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (first, first_ino) = &results[0];
    for (built, ino) in &results {
        assert_eq!(built, first);
        assert_eq!(ino, first_ino, "the image was built more than once");
    }
    let diff_ids: Vec<_> = inputs.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(first.chain_id, chain_id(&diff_ids).unwrap());
    assert_eq!(first.size, std::fs::metadata(&first.path).unwrap().len());
    fsck(&first.path);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_half_built_temporary_file_is_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_layers(dir.path(), &two_layers(), Compression::None);
    let cache = RootfsCache::new(dir.path().join("rootfs"), Limits::default());
    let diff_ids: Vec<_> = inputs.iter().map(|l| l.diff_id.clone()).collect();
    let final_path = cache.image_path(&chain_id(&diff_ids).unwrap());
    std::fs::create_dir_all(final_path.parent().unwrap()).unwrap();
    let mut tmp = final_path.clone().into_os_string();
    tmp.push(".tmp");
    // What a builder killed mid-write leaves behind.
    std::fs::write(&tmp, vec![0xAB; 10_000]).unwrap();
    let built = cache.ensure(&inputs).unwrap();
    assert_eq!(built.path, final_path);
    fsck(&built.path);
    assert!(!std::path::Path::new(&tmp).exists());
    let again = RootfsCache::new(dir.path().join("other"), Limits::default())
        .ensure(&inputs)
        .unwrap();
    assert_eq!(std::fs::read(&built.path).unwrap(), std::fs::read(&again.path).unwrap());
}

#[test]
fn a_failed_build_leaves_no_image_and_a_retry_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let layers = two_layers();
    let inputs = write_layers(dir.path(), &layers, Compression::Zstd);
    let tight = RootfsCache::new(
        dir.path().join("rootfs"),
        Limits {
            max_image_bytes: 64 << 10,
            ..Limits::default()
        },
    );
    let err = tight.ensure(&inputs).unwrap_err();
    assert!(error_chain(&err).contains("would exceed"), "{}", error_chain(&err));
    let names: Vec<_> = std::fs::read_dir(dir.path().join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| n.to_string_lossy().ends_with(".lock")),
        "{names:?}"
    );
    let roomy = RootfsCache::new(dir.path().join("rootfs"), Limits::default());
    fsck(&roomy.ensure(&inputs).unwrap().path);
}

#[test]
fn a_symlinked_cache_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_layers(dir.path(), &two_layers(), Compression::None);
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("rootfs")).unwrap();
    let err = RootfsCache::new(dir.path().join("rootfs"), Limits::default())
        .ensure(&inputs)
        .unwrap_err();
    assert!(
        matches!(err, FlattenError::UnsafeCacheDir { .. }),
        "{}",
        error_chain(&err)
    );
    assert_eq!(std::fs::read_dir(dir.path().join("elsewhere")).unwrap().count(), 0);
}

#[test]
fn an_image_needs_at_least_one_layer() {
    let dir = tempfile::tempdir().unwrap();
    let err = RootfsCache::new(dir.path().join("rootfs"), Limits::default())
        .ensure(&[])
        .unwrap_err();
    assert!(matches!(err, FlattenError::NoLayers));
}
