use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;

use super::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// One raw entry: name, type, link target, data.
type RawEntry<'a> = (&'a [u8], EntryType, &'a [u8], &'a [u8]);

/// A tar stream built entry by entry, names and link targets taken verbatim.
fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn into(dir: &Path) -> impl FnOnce(bool) -> Result<Placement> + '_ {
    move |_| {
        Ok(Placement {
            dir: dir.to_owned(),
            rename: None,
        })
    }
}

#[test]
fn a_tree_round_trips_with_links_modes_and_fifos() {
    let src = tmp();
    let d = src.path().join("app");
    fs::create_dir_all(d.join("sub/deep")).unwrap();
    fs::write(d.join("sub/file"), b"hello").unwrap();
    fs::set_permissions(d.join("sub/file"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::hard_link(d.join("sub/file"), d.join("hard")).unwrap();
    symlink("/etc/passwd", d.join("abs-link")).unwrap();
    fs::create_dir(d.join("ro")).unwrap();
    fs::write(d.join("ro/inside"), b"x").unwrap();
    fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let fifo = std::ffi::CString::new(d.join("pipe").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);

    let tar = pack_path(Vec::new(), &d, "app").unwrap();
    let dst = tmp();
    let done = unpack(&tar[..], UnpackOptions::default(), into(dst.path())).unwrap();
    assert!(done.skipped.is_empty());
    let out = dst.path().join("app");
    assert_eq!(fs::read(out.join("sub/file")).unwrap(), b"hello");
    assert_eq!(fs::metadata(out.join("sub/file")).unwrap().mode() & 0o7777, 0o751);
    assert_eq!(
        fs::metadata(out.join("hard")).unwrap().ino(),
        fs::metadata(out.join("sub/file")).unwrap().ino()
    );
    assert_eq!(fs::read_link(out.join("abs-link")).unwrap(), Path::new("/etc/passwd"));
    assert!(fs::symlink_metadata(out.join("pipe")).unwrap().file_type().is_fifo());
    assert!(out.join("sub/deep").is_dir());
    assert_eq!(fs::read(out.join("ro/inside")).unwrap(), b"x");
    assert_eq!(fs::metadata(out.join("ro")).unwrap().mode() & 0o777, 0o555);
    fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(out.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn contents_mode_packs_children_only() {
    let src = tmp();
    fs::write(src.path().join("a"), b"1").unwrap();
    fs::create_dir(src.path().join("b")).unwrap();
    let tar = pack_path(Vec::new(), src.path(), "").unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn names_are_confined() {
    assert_eq!(confine(b"/etc/passwd").unwrap(), Path::new("etc/passwd"));
    assert_eq!(confine(b"./a//b/./c").unwrap(), Path::new("a/b/c"));
    assert!(confine(b"a/../../x").is_err());
    assert!(confine(b"..").is_err());
    assert_eq!(confine(b"./").unwrap(), Path::new(""));
}

#[test]
fn an_entry_never_writes_through_a_symlink_from_the_stream() {
    let outside = tmp();
    let dst = tmp();
    let link = outside.path().to_str().unwrap().as_bytes().to_vec();
    let tar = raw_tar(&[
        (b"esc", EntryType::Symlink, &link, b""),
        (b"esc/owned", EntryType::Regular, b"", b"pwned"),
    ]);
    let err = unpack(&tar[..], UnpackOptions::default(), into(dst.path())).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[test]
fn a_symlink_at_the_destination_is_replaced_not_followed() {
    let outside = tmp();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"keep").unwrap();
    let dst = tmp();
    symlink(&victim, dst.path().join("f")).unwrap();
    let tar = raw_tar(&[(b"f", EntryType::Regular, b"", b"new")]);
    unpack(&tar[..], UnpackOptions::default(), into(dst.path())).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert_eq!(fs::read(dst.path().join("f")).unwrap(), b"new");
    assert!(fs::symlink_metadata(dst.path().join("f")).unwrap().is_file());
}

#[test]
fn escaping_names_and_hard_links_are_refused() {
    let dst = tmp();
    for tar in [
        raw_tar(&[(b"../x", EntryType::Regular, b"", b"1")]),
        raw_tar(&[(b"x", EntryType::Link, b"../../etc/passwd", b"")]),
        raw_tar(&[(b"x", EntryType::Link, b"missing", b"")]),
        raw_tar(&[(b"s", EntryType::GNUSparse, b"", b"")]),
    ] {
        let err = unpack(&tar[..], UnpackOptions::default(), into(dst.path())).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Entry { .. } | ArchiveError::Malformed(_)),
            "{err}"
        );
    }
    assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);
}

#[test]
fn absolute_names_land_inside_the_destination() {
    let dst = tmp();
    let tar = raw_tar(&[(b"/etc/in-dest", EntryType::Regular, b"", b"ok")]);
    unpack(&tar[..], UnpackOptions::default(), into(dst.path())).unwrap();
    assert_eq!(fs::read(dst.path().join("etc/in-dest")).unwrap(), b"ok");
}

#[test]
fn devices_are_skipped_unless_asked_for() {
    let dst = tmp();
    let tar = raw_tar(&[(b"null", EntryType::Char, b"", b"")]);
    let done = unpack(&tar[..], UnpackOptions::default(), into(dst.path())).unwrap();
    assert_eq!(done.skipped, ["null"]);
    assert!(!dst.path().join("null").exists());
}

#[test]
fn truncated_and_garbage_streams_fail_cleanly() {
    let dst = tmp();
    let mut tar = raw_tar(&[(b"big", EntryType::Regular, b"", &[7u8; 4096])]);
    tar.truncate(1500);
    assert!(unpack(&tar[..], UnpackOptions::default(), into(dst.path())).is_err());
    let garbage = vec![0x41u8; 2048];
    assert!(unpack(&garbage[..], UnpackOptions::default(), into(dst.path())).is_err());
}

#[test]
fn renaming_replaces_the_first_component() {
    let dst = tmp();
    let tar = raw_tar(&[
        (b"src/", EntryType::Directory, b"", b""),
        (b"src/f", EntryType::Regular, b"", b"1"),
        (b"src/h", EntryType::Link, b"src/f", b""),
    ]);
    let place = |_| {
        Ok(Placement {
            dir: dst.path().to_owned(),
            rename: Some("dest".into()),
        })
    };
    unpack(&tar[..], UnpackOptions::default(), place).unwrap();
    assert_eq!(fs::read(dst.path().join("dest/f")).unwrap(), b"1");
    assert_eq!(fs::read(dst.path().join("dest/h")).unwrap(), b"1");
}

#[test]
fn placement_follows_docker_cp() {
    let t = tmp();
    let dir = t.path().join("dir");
    fs::create_dir(&dir).unwrap();
    let file = t.path().join("file");
    fs::write(&file, b"").unwrap();
    let missing = t.path().join("new");
    let at = |dir: &Path, rename: Option<&str>| Placement {
        dir: dir.to_owned(),
        rename: rename.map(String::from),
    };
    // Into an existing directory.
    assert_eq!(place(&dir, false, false).unwrap(), at(&dir, None));
    assert_eq!(place(&dir, true, false).unwrap(), at(&dir, None));
    // A file replaces a file; a directory cannot.
    assert_eq!(place(&file, false, false).unwrap(), at(t.path(), Some("file")));
    assert!(place(&file, true, false).is_err());
    // A missing path becomes the copy.
    assert_eq!(place(&missing, false, false).unwrap(), at(t.path(), Some("new")));
    assert_eq!(place(&missing, true, false).unwrap(), at(t.path(), Some("new")));
    // `dest/` must exist for a file; its parent must exist in any case.
    assert!(place(Path::new(&format!("{}/", missing.display())), false, false).is_err());
    assert!(place(&t.path().join("no/such"), false, false).is_err());
    // `SRC/.` into a missing directory creates it.
    assert_eq!(place(&missing, true, true).unwrap(), at(&missing, None));
    assert!(missing.is_dir());
}

#[test]
fn changes_list_adds_changes_and_deletes_like_docker_diff() {
    let (upper, lower) = (tmp(), tmp());
    let (u, l) = (upper.path(), lower.path());
    for d in ["etc", "usr/bin", "var"] {
        fs::create_dir_all(l.join(d)).unwrap();
    }
    fs::write(l.join("etc/passwd"), b"root").unwrap();
    fs::write(l.join("usr/bin/tool"), b"").unwrap();
    // The runtime's files and a copied-up but unchanged /etc are not changes.
    fs::create_dir(u.join("etc")).unwrap();
    fs::write(u.join("etc/hosts"), b"127.0.0.1 localhost").unwrap();
    fs::create_dir(u.join("proc")).unwrap();
    assert_eq!(changes(u, l).unwrap(), []);
    // A change, an addition in a new directory, a deletion (whiteouts need root, so
    // the deletion is checked by the end-to-end tests; here a changed file).
    fs::write(u.join("etc/passwd"), b"root\nuser").unwrap();
    fs::create_dir_all(u.join("opt/app")).unwrap();
    fs::write(u.join("opt/app/run"), b"").unwrap();
    fs::create_dir_all(u.join("usr/bin")).unwrap();
    fs::write(u.join("usr/bin/new"), b"").unwrap();
    let shown: Vec<String> = changes(u, l)
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {}", c.kind, c.path))
        .collect();
    assert_eq!(
        shown,
        [
            "C /etc",
            "C /etc/passwd",
            "A /opt",
            "A /opt/app",
            "A /opt/app/run",
            "C /usr",
            "C /usr/bin",
            "A /usr/bin/new",
        ]
    );
}

proptest! {
    #[test]
    fn confined_names_stay_relative(name in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(p) = confine(&name) {
            prop_assert!(p.is_relative());
            prop_assert!(p.components().all(|c| matches!(c, std::path::Component::Normal(_))));
        }
    }

    #[test]
    fn unpacking_arbitrary_bytes_never_panics_or_escapes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let root = tmp();
        let dst = root.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let _ = unpack(&bytes[..], UnpackOptions::default(), into(&dst));
        let outside: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        prop_assert_eq!(outside.len(), 1);
    }
}
