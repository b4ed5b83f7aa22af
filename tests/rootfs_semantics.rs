//! OCI layer semantics of flattened root disks, each checked by `fsck.erofs` and by
//! comparing the loop-mounted image with the Python reference reader.

mod rootfs_support;

use std::os::unix::fs::MetadataExt;

use hull::rootfs::Compression;
use rootfs_support::*;

#[test]
fn whiteout_hides_lower_file_and_leaves_no_marker() {
    let l1 = layer(&[
        dir("etc", 0o755),
        file("etc/a", b"a", 0o644),
        file("etc/b", b"b", 0o644),
    ]);
    let l2 = layer(&[whiteout("etc/.wh.a")]);
    let built = build_and_compare(&[l1, l2]);
    if let Some(m) = mount(&built.image) {
        let names: Vec<_> = std::fs::read_dir(m.dir.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["b"]);
    }
}

#[test]
fn whiteout_spares_a_name_placed_by_the_same_layer_in_either_order() {
    let l1 = layer(&[file("x", b"lower", 0o644), file("y", b"lower", 0o644)]);
    let l2 = layer(&[
        file("x", b"upper", 0o644),
        whiteout(".wh.x"),
        whiteout(".wh.y"),
        file("y", b"upper", 0o644),
    ]);
    let built = build_and_compare(&[l1, l2]);
    if let Some(m) = mount(&built.image) {
        assert_eq!(std::fs::read(m.dir.path().join("x")).unwrap(), b"upper");
        assert_eq!(std::fs::read(m.dir.path().join("y")).unwrap(), b"upper");
    }
}

#[test]
fn whiteout_of_a_directory_removes_its_subtree() {
    let l1 = layer(&[
        dir("d", 0o755),
        dir("d/e", 0o700),
        file("d/e/f", b"f", 0o644),
        file("keep", b"k", 0o644),
    ]);
    let l2 = layer(&[whiteout(".wh.d")]);
    build_and_compare(&[l1, l2]);
}

#[test]
fn opaque_directory_hides_lower_children_but_keeps_same_layer_siblings() {
    let l1 = layer(&[
        dir("d", 0o755),
        file("d/lower", b"1", 0o644),
        dir("d/sub", 0o755),
        file("d/sub/deep", b"2", 0o644),
    ]);
    // Siblings before and after the marker both survive; d/sub/deep is lower content.
    let l2 = layer(&[
        dir("d", 0o750),
        file("d/before", b"3", 0o644),
        file("d/sub/new", b"4", 0o644),
        whiteout("d/.wh..wh..opq"),
        file("d/after", b"5", 0o644),
    ]);
    let built = build_and_compare(&[l1, l2]);
    if let Some(m) = mount(&built.image) {
        let mut names: Vec<_> = std::fs::read_dir(m.dir.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, vec!["after", "before", "sub"]);
        assert!(!m.dir.path().join("d/sub/deep").exists());
    }
}

#[test]
fn types_replace_each_other_across_layers() {
    let l1 = layer(&[
        dir("a", 0o755),
        file("a/child", b"c", 0o644),
        file("b", b"file", 0o644),
        symlink("c", "/target"),
        file("d", b"file", 0o644),
    ]);
    let l2 = layer(&[
        file("a", b"now a file", 0o600),
        dir("b", 0o711),
        file("b/inside", b"i", 0o644),
        dir("c", 0o755),
        symlink("d", "b/inside"),
    ]);
    let l3 = layer(&[symlink("a", "d"), file("b", b"file again", 0o644), dir("d", 0o755)]);
    build_and_compare(&[l1.clone(), l2.clone()]);
    build_and_compare(&[l1, l2, l3]);
}

#[test]
fn directory_over_directory_merges_and_takes_new_metadata() {
    let l1 = layer(&[dir("d", 0o755).owner(1, 1), file("d/old", b"o", 0o644)]);
    let l2 = layer(&[
        dir("d", 0o1777).owner(2, 3).mtime(1_700_000_000),
        file("d/new", b"n", 0o644),
    ]);
    build_and_compare(&[l1, l2]);
}

#[test]
fn hard_links_within_and_across_layers_share_one_inode() {
    let l1 = layer(&[
        file("bin", b"#!binary", 0o755),
        hardlink("bin2", "bin"),
        symlink("sym", "bin"),
        hardlink("symlink-link", "sym"),
    ]);
    let l2 = layer(&[hardlink("bin3", "/bin"), hardlink("./bin4", "./bin2")]);
    let built = build_and_compare(&[l1, l2]);
    if let Some(m) = mount(&built.image) {
        let meta = std::fs::metadata(m.dir.path().join("bin4")).unwrap();
        assert_eq!(meta.nlink(), 4);
        assert_eq!(meta.ino(), std::fs::metadata(m.dir.path().join("bin")).unwrap().ino());
    }
}

#[test]
fn replacing_one_name_of_a_hard_link_keeps_the_others() {
    let l1 = layer(&[file("a", b"old", 0o644), hardlink("b", "a")]);
    let l2 = layer(&[file("a", b"new", 0o644)]);
    build_and_compare(&[l1, l2]);
}

#[test]
fn devices_fifos_special_modes_owners_and_xattrs_are_kept() {
    let l1 = layer(&[
        dir("dev", 0o755),
        char_dev("dev/null", 1, 3),
        block_dev("dev/sda", 8, 0),
        char_dev("dev/big", 4095, 1_048_575),
        fifo("dev/fifo"),
        file("suid", b"s", 0o4755),
        file("sgid", b"g", 0o2755),
        dir("tmp", 0o1777),
        file("owned", b"o", 0o640).owner(100_000, 4_000_000_000),
        file("ping", b"cap", 0o755).xattr(
            "security.capability",
            &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        file("tagged", b"t", 0o644)
            .xattr("user.a", b"1")
            .xattr("user.b", b"")
            .xattr("trusted.x", &[0xff; 300]),
        dir("xdir", 0o755).xattr("user.dir", b"on a directory"),
        file("old", b"t", 0o644).mtime(0),
    ]);
    build_and_compare(&[l1]);
}

#[test]
fn writes_through_symlinks_land_inside_the_image_root() {
    let l1 = layer(&[dir("etc", 0o755), file("etc/passwd", b"root:x:0:0", 0o644)]);
    let l2 = layer(&[
        symlink("link-etc", "/etc"),
        symlink("x", "/"),
        symlink("up", "../../../.."),
        file("link-etc/shadow", b"through absolute link", 0o600),
        file("x/tmp/y", b"through root link", 0o644),
        file("up/z", b"through dotdot link", 0o644),
    ]);
    let built = build_and_compare(&[l1, l2]);
    if let Some(m) = mount(&built.image) {
        let root = m.dir.path();
        assert_eq!(
            std::fs::read(root.join("etc/shadow")).unwrap(),
            b"through absolute link"
        );
        assert_eq!(std::fs::read(root.join("tmp/y")).unwrap(), b"through root link");
        assert_eq!(std::fs::read(root.join("z")).unwrap(), b"through dotdot link");
    }
}

#[test]
fn root_entry_sets_root_metadata_and_missing_parents_are_implicit() {
    let l1 = layer(&[
        dir("./", 0o700).owner(5, 6).mtime(1_234_567_890),
        file("a/b/c/file", b"deep", 0o644),
    ]);
    build_and_compare(&[l1]);
}

#[test]
fn large_directories_files_and_long_symlinks_span_blocks() {
    let mut entries = vec![dir("many", 0o755)];
    for i in 0..3000 {
        entries.push(file(
            &format!("many/entry-with-a-longish-name-{i:05}"),
            format!("{i}").as_bytes(),
            0o644,
        ));
    }
    let big: Vec<u8> = (0..(3 << 20) + 123).map(|i: u32| (i % 251) as u8).collect();
    entries.push(file("big", &big, 0o644));
    entries.push(symlink("longlink", &"a/".repeat(1500)));
    entries.push(symlink(&"n".repeat(200), "target-of-a-long-name"));
    entries.push(file(
        &format!("{}/f", "deep-component".repeat(15)),
        b"long path via pax",
        0o644,
    ));
    build_and_compare(&[layer(&entries)]);
}

#[test]
fn gzip_zstd_and_plain_layers_give_byte_identical_images() {
    let l1 = layer(&[dir("a", 0o755), file("a/f", &[7u8; 10_000], 0o644), symlink("s", "a/f")]);
    let l2 = layer(&[whiteout("a/.wh.f"), file("b", b"b", 0o644)]);
    let layers = [l1, l2];
    let plain = build_compressed(&layers, Compression::None);
    let gz = build_compressed(&layers, Compression::Gzip);
    let zst = build_compressed(&layers, Compression::Zstd);
    fsck(&gz.image);
    compare_with_reference(&zst);
    let bytes = std::fs::read(&plain.image).unwrap();
    assert_eq!(bytes, std::fs::read(&gz.image).unwrap());
    assert_eq!(bytes, std::fs::read(&zst.image).unwrap());
}

#[test]
fn same_layers_give_byte_identical_images() {
    let mut entries = Vec::new();
    for i in 0..200 {
        entries.push(file(&format!("d{}/f{i}", i % 7), format!("{i}").repeat(i).as_bytes(), 0o644).mtime(i as u64));
    }
    let layers = [
        layer(&entries),
        layer(&[whiteout("d3/.wh..wh..opq"), file("d3/n", b"n", 0o600)]),
    ];
    assert_eq!(flatten(&layers), flatten(&layers));
}

#[test]
fn fsck_accepts_images_whose_metadata_ends_on_any_slot_of_a_block() {
    // Each extra empty file adds one 32-byte inode: 130 counts walk the end of the
    // metadata area across every slot of a block, including its very end.
    let dir = tempfile::tempdir().unwrap();
    for count in 0..130 {
        let entries: Vec<Entry> = (0..count)
            .map(|i| file(&format!("f{i:03}"), b"", 0o644).mtime(0))
            .collect();
        let image = dir.path().join(format!("{count}.erofs"));
        std::fs::write(&image, flatten(&[layer(&entries)])).unwrap();
        fsck(&image);
    }
}
