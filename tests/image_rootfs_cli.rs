//! `hull image rootfs`: the store's layers become a cached, checked EROFS disk.

mod common;

use std::fs;
use std::process::Command;

use common::fixtures::{Image, Kind, TAG};
use common::hull::{Hull, EXIT_FAILURE};
use common::registry::{Auth, Registry};

/// Pulls a test image of `kind` and returns the hull with it and its reference.
fn pulled(kind: Kind) -> (Hull, Registry, String) {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), kind);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "rootfs:latest");
    let reference = registry.reference("rootfs:latest");
    hull.ok(&["pull", "-q", &reference]);
    (hull, registry, reference)
}

/// `PATH\tSIZE` from the command's output.
fn path_and_size(out: &str) -> (String, u64) {
    let (path, size) = out.trim().split_once('\t').expect("PATH<TAB>SIZE");
    (path.to_owned(), size.parse().expect("size in bytes"))
}

fn fsck(path: &str) {
    let out = Command::new("fsck.erofs")
        .arg(path)
        .output()
        .expect("run fsck.erofs (erofs-utils)");
    assert!(
        out.status.success(),
        "fsck.erofs {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rootfs_builds_a_disk_that_fsck_accepts_and_reuses_it() {
    for kind in [Kind::Busybox, Kind::Zstd] {
        let (hull, _registry, reference) = pulled(kind);
        let (path, size) = path_and_size(&hull.ok(&["image", "rootfs", &reference]));
        assert!(path.starts_with(hull.root.join("rootfs").to_str().unwrap()), "{path}");
        assert_eq!(fs::metadata(&path).unwrap().len(), size);
        fsck(&path);
        let built = fs::metadata(&path).unwrap().modified().unwrap();
        let (again, _) = path_and_size(&hull.ok(&["image", "rootfs", &reference]));
        assert_eq!(again, path, "a second request finds the cached disk");
        assert_eq!(
            fs::metadata(&path).unwrap().modified().unwrap(),
            built,
            "the cached disk is not rebuilt"
        );
    }
}

#[test]
fn rootfs_output_copies_the_disk() {
    let (hull, _registry, reference) = pulled(Kind::Busybox);
    let out = hull.work().join("disk.erofs");
    let (path, size) = path_and_size(&hull.ok(&["image", "rootfs", "-o", out.to_str().unwrap(), &reference]));
    assert_eq!(path, out.to_str().unwrap());
    let (cached, _) = path_and_size(&hull.ok(&["image", "rootfs", &reference]));
    assert_eq!(fs::read(&out).unwrap(), fs::read(&cached).unwrap());
    assert_eq!(fs::metadata(&out).unwrap().len(), size);
}

#[test]
fn rootfs_of_a_corrupted_layer_names_it_and_publishes_nothing() {
    let (hull, _registry, reference) = pulled(Kind::Busybox);
    let id = hull.inspect(&reference)["RootFS"]["Layers"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // Corrupt the first layer blob in the store (the uncompressed stream no longer
    // matches its diff_id, or no longer decompresses).
    let index: serde_json::Value = serde_json::from_slice(&fs::read(hull.root.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(hull.root.join("blobs/sha256").join(manifest_hex)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let blob = hull.root.join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&blob, bytes).unwrap();

    let out = hull.run(&["image", "rootfs", &reference]);
    assert_eq!(out.status.code(), Some(EXIT_FAILURE));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one error line: {err}");
    assert!(err.contains(&layer), "the error names the layer {layer}: {err}");
    let published: Vec<_> = fs::read_dir(hull.root.join("rootfs"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        published.iter().all(|n| !n.ends_with(".erofs")),
        "no disk published: {published:?} (diff_id {id})"
    );
}

#[test]
fn rootfs_of_a_missing_image_fails_without_building() {
    let hull = Hull::new();
    let err = hull.fails(&["image", "rootfs", "nothing:here"]);
    assert!(err.contains("nothing:here"), "{err}");
    assert!(!hull.root.join("rootfs").exists());
}
