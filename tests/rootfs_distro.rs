//! A real distribution tree, packed by GNU tar into layers, flattened, checked by
//! `fsck.erofs` and compared with the reference reader through a loop mount.
//!
//! The tree is `$HULL_DISTRO_TREE` when set (for example a `debootstrap` of Debian;
//! `scripts/bench-rootfs.sh` makes one), otherwise a part of the host's own Debian
//! installation (`/etc`, `/usr/sbin`, `/usr/share/{perl,zoneinfo}`, `/usr/include`).

mod rootfs_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use hull::rootfs::{error_chain, Compression, LayerInput, Limits, RootfsCache};
use rootfs_support::*;

fn gnu_tar(root: &Path, members: &[&str], out: &Path) {
    let status = Command::new("tar")
        .args([
            "--numeric-owner",
            "--xattrs",
            "--xattrs-include=*",
            "--format=pax",
            "--ignore-failed-read",
        ])
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(out)
        .args(members)
        .status()
        .expect("tar runs");
    // 1: some file changed while being read; the archive is still complete.
    assert!(status.code().is_some_and(|c| c <= 1), "tar failed: {status}");
}

/// The tree to pack and its split into two layers.
fn distro_tree() -> (PathBuf, Vec<&'static str>, Vec<&'static str>) {
    match std::env::var_os("HULL_DISTRO_TREE") {
        Some(tree) => (PathBuf::from(tree), vec!["--exclude=./usr", "."], vec!["./usr"]),
        None => {
            eprintln!("HULL_DISTRO_TREE unset: using part of the host's Debian installation");
            (
                PathBuf::from("/"),
                vec!["etc", "usr/sbin", "usr/share/perl", "usr/share/zoneinfo"],
                vec!["usr/include"],
            )
        }
    }
}

/// A third layer as an image builder writes it: whiteouts, an opaque directory and
/// replaced files, packed by GNU tar from a staging directory.
fn changes_layer(dir: &Path, out: &Path) {
    let stage = dir.join("stage");
    std::fs::create_dir_all(stage.join("etc/ssl")).unwrap();
    std::fs::create_dir_all(stage.join("usr/sbin")).unwrap();
    std::fs::write(stage.join("etc/.wh.passwd"), b"").unwrap();
    std::fs::write(stage.join("etc/ssl/.wh..wh..opq"), b"").unwrap();
    std::fs::write(stage.join("etc/ssl/only-this"), b"replaced").unwrap();
    std::fs::write(stage.join("etc/hostname"), b"flattened\n").unwrap();
    std::fs::write(stage.join("usr/sbin/.wh.nologin"), b"").unwrap();
    std::os::unix::fs::symlink("/bin/true", stage.join("usr/sbin/new-link")).unwrap();
    gnu_tar(&stage, &["."], out);
}

#[test]
fn distribution_tree_in_three_layers_matches_the_reference_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (tree, first, second) = distro_tree();
    let paths = [
        dir.path().join("l1.tar"),
        dir.path().join("l2.tar"),
        dir.path().join("l3.tar"),
    ];
    gnu_tar(&tree, &first, &paths[0]);
    gnu_tar(&tree, &second, &paths[1]);
    changes_layer(dir.path(), &paths[2]);
    let inputs: Vec<LayerInput> = paths
        .iter()
        .map(|p| {
            let digest = sha256(&std::fs::read(p).unwrap());
            LayerInput {
                digest: digest.clone(),
                diff_id: digest,
                compression: Compression::None,
                path: p.clone(),
            }
        })
        .collect();
    let cache = RootfsCache::new(dir.path().join("rootfs"), Limits::default());
    let image = cache
        .ensure(&inputs)
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
        .path;
    fsck(&image);
    compare_with_reference(&Built {
        dir,
        image,
        layer_paths: paths.to_vec(),
    });
}
