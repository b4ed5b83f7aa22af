//! `hull load` of archives made by skopeo (docker save format and OCI layout tarballs,
//! plain and gzip) and `hull save` read back by skopeo and by hull.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fixtures::{Image, Kind, TAG};
use common::hull::{check_failure, lines, Hull};
use common::process::run_ok;
use common::store;

const NAME: &str = "example.com/hull/busybox:1.0";

fn docker_archive(hull: &Hull, image: &Image) -> PathBuf {
    let file = hull.work().join("docker-archive.tar");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet"])
        .arg(format!("oci:{}:{TAG}", image.layout.display()))
        .arg(format!("docker-archive:{}:{NAME}", file.display()));
    run_ok(cmd);
    file
}

/// A tar of the layout directory (whose ref.name is `NAME`).
fn oci_archive(hull: &Hull, image: &Image) -> PathBuf {
    let file = hull.work().join("oci-layout.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(&image.layout).arg("-cf").arg(&file).arg(".");
    run_ok(cmd);
    file
}

fn gzip(file: &Path) -> PathBuf {
    let mut cmd = Command::new("gzip");
    cmd.args(["-k", "-f"]).arg(file);
    run_ok(cmd);
    PathBuf::from(format!("{}.gz", file.display()))
}

fn assert_loaded(hull: &Hull, stdout: &str, image: &Image) {
    let m = &image.manifests[0];
    assert!(stdout.contains(NAME), "load must say what it loaded:\n{stdout}");
    assert_eq!(store::ref_names(&hull.root), [NAME]);
    store::assert_consistent(&hull.root);
    let v = hull.inspect(NAME);
    assert_eq!(v["Id"], m.config.as_str());
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!(m.diff_ids));
    let config = store::skopeo_inspect(&hull.root, NAME, &["--config"]);
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(m.diff_ids));
}

#[test]
fn load_docker_archive_from_skopeo() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let archive = docker_archive(&hull, &image);
    let out = hull.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_loaded(&hull, &out, &image);
}

#[test]
fn load_gzip_docker_archive() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let archive = gzip(&docker_archive(&hull, &image));
    let out = hull.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_loaded(&hull, &out, &image);
}

#[test]
fn load_oci_layout_tarball() {
    let hull = Hull::new();
    let image = Image::build_tagged(&hull.work(), Kind::Busybox, NAME);
    let archive = oci_archive(&hull, &image);
    let out = hull.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_loaded(&hull, &out, &image);
    assert_eq!(
        store::skopeo_inspect(&hull.root, NAME, &[])["Digest"],
        image.digest.as_str()
    );
}

#[test]
fn load_gzip_oci_layout_tarball_with_a_zstd_layer() {
    let hull = Hull::new();
    let image = Image::build_tagged(&hull.work(), Kind::Zstd, NAME);
    let archive = gzip(&oci_archive(&hull, &image));
    let out = hull.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_loaded(&hull, &out, &image);
}

#[test]
fn load_quiet_prints_nothing_but_the_result() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let archive = docker_archive(&hull, &image);
    let out = hull.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert!(lines(&out).len() <= 1, "quiet load printed:\n{out}");
}

#[test]
fn load_of_a_file_that_is_no_archive_fails_without_side_effects() {
    let hull = Hull::new();
    let junk = hull.work().join("junk.tar");
    fs::write(&junk, b"this is not a tar archive, not even close".repeat(40)).unwrap();
    let err = hull.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert!(err.contains("junk.tar"), "error must name the file: {err}");
    assert!(store::ref_names(&hull.root).is_empty());
    assert!(store::blob_names(&hull.root).is_empty());
}

#[test]
fn load_of_a_missing_file_fails_naming_it() {
    let hull = Hull::new();
    let missing = hull.work().join("absent.tar");
    let err = hull.fails(&["load", "-i", missing.to_str().unwrap()]);
    assert!(err.contains("absent.tar"), "{err}");
}

#[test]
fn load_of_a_layer_not_matching_its_diff_id_fails_and_tags_nothing() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let archive = docker_archive(&hull, &image);
    // The archive starts with the first layer's tar, then busybox's bytes inside it.
    let mut bytes = fs::read(&archive).unwrap();
    bytes[100_000] ^= 0x01;
    fs::write(&archive, bytes).unwrap();
    hull.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert!(store::ref_names(&hull.root).is_empty());
    store::assert_consistent(&hull.root);
}

#[test]
fn save_writes_an_archive_skopeo_reads() {
    let hull = Hull::new();
    let image = Image::build_tagged(&hull.work(), Kind::Busybox, NAME);
    hull.ok(&["load", "-q", "-i", oci_archive(&hull, &image).to_str().unwrap()]);
    let saved = hull.work().join("saved.tar");
    hull.ok(&["save", "-o", saved.to_str().unwrap(), NAME]);
    let m = &image.manifests[0];

    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--config"])
        .arg(format!("docker-archive:{}", saved.display()));
    let config: serde_json::Value = serde_json::from_str(&run_ok(cmd)).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(m.diff_ids));

    let mut cmd = Command::new("tar");
    cmd.arg("-xOf").arg(&saved).arg("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&run_ok(cmd)).expect("manifest.json");
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([NAME]));

    // And back into an empty store.
    let other = Hull::new();
    other.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(other.inspect(NAME)["Id"], m.config.as_str());
    store::assert_consistent(&other.root);
}

#[test]
fn save_of_two_images_holds_both() {
    let hull = Hull::new();
    let image = Image::build_tagged(&hull.work(), Kind::Busybox, NAME);
    hull.ok(&["load", "-q", "-i", oci_archive(&hull, &image).to_str().unwrap()]);
    let zstd_dir = hull.work().join("z");
    fs::create_dir(&zstd_dir).unwrap();
    let zimage = Image::build_tagged(&zstd_dir, Kind::Zstd, "example.com/hull/zstd:2.0");
    let ztar = zstd_dir.join("z.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(&zimage.layout).arg("-cf").arg(&ztar).arg(".");
    run_ok(cmd);
    hull.ok(&["load", "-q", "-i", ztar.to_str().unwrap()]);

    let saved = hull.work().join("both.tar");
    hull.ok(&["save", "-o", saved.to_str().unwrap(), NAME, "example.com/hull/zstd:2.0"]);
    for (name, img) in [(NAME, &image), ("example.com/hull/zstd:2.0", &zimage)] {
        let mut cmd = Command::new("skopeo");
        cmd.args(["inspect", "--config"])
            .arg(format!("docker-archive:{}:{name}", saved.display()));
        let config: serde_json::Value = serde_json::from_str(&run_ok(cmd)).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!(img.manifests[0].diff_ids),
            "{name}"
        );
    }
}

#[test]
fn save_of_a_missing_image_fails_and_writes_no_file() {
    let hull = Hull::new();
    let out = hull.work().join("never.tar");
    let err = hull.fails(&["save", "-o", out.to_str().unwrap(), "absent/image:1"]);
    assert!(err.contains("absent/image"), "{err}");
    assert!(!out.exists(), "a failed save left {out:?}");
}

/// A docker-save archive whose manifest.json and member names point outside it.
fn escaping_archive(path: &Path) {
    let file = fs::File::create(path).unwrap();
    let mut builder = tar::Builder::new(file);
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_old();
        // Written raw: the tar crate refuses `..` in names, a hostile archive does not.
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    };
    let manifest = serde_json::json!([{
        "Config": "../../escape-config.json",
        "RepoTags": ["example.com/evil:1"],
        "Layers": ["../../escape-layer.tar"],
    }]);
    add("../../escape-config.json", b"{}");
    add("../../escape-layer.tar", &[0u8; 1024]);
    add("manifest.json", manifest.to_string().as_bytes());
    builder.finish().unwrap();
}

#[test]
fn load_of_an_archive_naming_paths_outside_it_is_refused() {
    let hull = Hull::new();
    let archive = hull.work().join("nested/deeper/evil.tar");
    fs::create_dir_all(archive.parent().unwrap()).unwrap();
    escaping_archive(&archive);
    let top = hull.work().parent().unwrap().to_path_buf();
    let before = store::tree(&top);
    // Run from beside the archive, so `../../` relative to either stays in the test's tree.
    let args = ["load", "-i", archive.to_str().unwrap()];
    let out = hull
        .command(&args)
        .current_dir(archive.parent().unwrap())
        .output()
        .unwrap();
    check_failure(&args, out);
    let created: Vec<String> = store::tree(&top)
        .into_iter()
        .filter(|p| !before.contains(p) && !p.starts_with("store"))
        .collect();
    assert!(created.is_empty(), "load wrote outside its store: {created:?}");
    assert!(
        store::tree(&top).iter().all(|p| !p.contains("escape")),
        "{:?}",
        store::tree(&top)
    );
    assert!(store::ref_names(&hull.root).is_empty());
    store::assert_consistent(&hull.root);
}
