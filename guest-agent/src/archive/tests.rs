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
    move |_| Placement::into(dir)
}

/// As the agent unpacks: modes, fifos and devices as recorded.
fn guest() -> UnpackOptions {
    UnpackOptions::guest(false)
}

/// As the host unpacks, with a known umask.
fn host() -> UnpackOptions {
    UnpackOptions {
        modes: Modes::Safe { umask: 0o022 },
        ..UnpackOptions::host()
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A raw entry with its mode.
fn raw_with_mode(name: &[u8], kind: EntryType, mode: u32, data: &[u8]) -> Vec<u8> {
    let mut tar = raw_tar(&[(name, kind, b"", data)]);
    let mut h = Header::from_byte_slice(&tar[..512]).clone();
    h.set_mode(mode);
    h.set_cksum();
    tar[..512].copy_from_slice(h.as_bytes());
    tar
}

/// Files and directories below `dir`, as relative paths, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
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
    let done = unpack(&tar[..], guest(), into(dst.path())).unwrap();
    assert_eq!(done.skipped, 0);
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
    assert_eq!((done.skipped, done.skipped_names), (1, vec!["null".to_owned()]));
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
            rename: Some("dest".into()),
            ..Placement::into(dst.path())?
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
    let at = |dir: &Path, rename: Option<&str>| (dir.to_owned(), rename.map(std::ffi::OsString::from));
    let place = |dest: &Path, is_dir, contents| place(dest, is_dir, contents).map(|p| (p.path, p.rename));
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
    let m = tmp();
    let overlay = Overlay {
        upper: u,
        lower: l,
        merged: m.path(),
        xattrs: Overlay::TRUSTED,
    };
    assert_eq!(changes(&overlay).unwrap(), []);
    // A change, an addition in a new directory, a deletion (whiteouts need root, so
    // the deletion is checked by the end-to-end tests; here a changed file).
    fs::write(u.join("etc/passwd"), b"root\nuser").unwrap();
    fs::create_dir_all(u.join("opt/app")).unwrap();
    fs::write(u.join("opt/app/run"), b"").unwrap();
    fs::create_dir_all(u.join("usr/bin")).unwrap();
    fs::write(u.join("usr/bin/new"), b"").unwrap();
    let shown: Vec<String> = changes(&overlay)
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

#[test]
fn a_copy_accepts_only_entries_below_the_source_name() {
    let dst = tmp();
    let home_file = dst.path().join(".bashrc");
    fs::write(&home_file, b"mine").unwrap();
    let tar = raw_tar(&[
        (b"hosts", EntryType::Regular, b"", b"127.0.0.1"),
        (b".bashrc", EntryType::Regular, b"", b"evil"),
    ]);
    let options = UnpackOptions {
        below: Some("hosts".into()),
        ..host()
    };
    let err = unpack(&tar[..], options, into(dst.path())).unwrap_err();
    assert!(err.to_string().contains(".bashrc"), "{err}");
    assert!(err.to_string().contains("outside the copied source"), "{err}");
    assert_eq!(fs::read(&home_file).unwrap(), b"mine");
    // What came before the bad entry stays, inside the destination.
    assert_eq!(fs::read(dst.path().join("hosts")).unwrap(), b"127.0.0.1");
    // A hard link is held to the same rule.
    let tar = raw_tar(&[(b"hosts", EntryType::Link, b".bashrc", b"")]);
    let options = UnpackOptions {
        below: Some("hosts".into()),
        ..host()
    };
    assert!(unpack(&tar[..], options, into(dst.path())).is_err());
}

#[test]
fn the_host_never_makes_setuid_setgid_or_world_writable_files_and_applies_the_umask() {
    let dst = tmp();
    for (name, kind, mode) in [
        (&b"suid"[..], EntryType::Regular, 0o4755),
        (b"sgid", EntryType::Regular, 0o2755),
        (b"open", EntryType::Regular, 0o666),
        (b"tmpdir", EntryType::Directory, 0o1777),
    ] {
        unpack(&raw_with_mode(name, kind, mode, b"")[..], host(), into(dst.path())).unwrap();
    }
    let d = dst.path();
    assert_eq!(mode_of(&d.join("suid")), 0o755);
    assert_eq!(mode_of(&d.join("sgid")), 0o755);
    assert_eq!(mode_of(&d.join("open")), 0o644);
    assert_eq!(mode_of(&d.join("tmpdir")), 0o755);
    // The agent, as root in the guest, keeps them.
    let g = tmp();
    unpack(
        &raw_with_mode(b"suid", EntryType::Regular, 0o4755, b"")[..],
        guest(),
        into(g.path()),
    )
    .unwrap();
    assert_eq!(mode_of(&g.path().join("suid")), 0o4755);
}

#[test]
fn a_directory_already_there_keeps_its_mode_on_the_host() {
    let dst = tmp();
    let ssh = dst.path().join(".ssh");
    fs::create_dir(&ssh).unwrap();
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o700)).unwrap();
    let tar = raw_with_mode(b".ssh/", EntryType::Directory, 0o777, b"");
    unpack(&tar[..], host(), into(dst.path())).unwrap();
    assert_eq!(mode_of(&ssh), 0o700);
}

#[test]
fn fifos_and_devices_are_counted_and_skipped_on_the_host() {
    let dst = tmp();
    let mut entries = Vec::new();
    let names: Vec<Vec<u8>> = (0..15).map(|i| format!("n{i:02}").into_bytes()).collect();
    for (i, name) in names.iter().enumerate() {
        let kind = if i % 2 == 0 { EntryType::Fifo } else { EntryType::Char };
        entries.push((&name[..], kind, &b""[..], &b""[..]));
    }
    let done = unpack(&raw_tar(&entries)[..], host(), into(dst.path())).unwrap();
    assert_eq!(done.skipped, 15);
    assert_eq!(done.skipped_names.len(), 10, "only the first few are named");
    assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);
}

#[test]
fn an_endless_stream_stops_at_its_byte_limit() {
    // A valid header announcing a huge file, then bytes for ever.
    let mut h = Header::new_gnu();
    h.set_path("big").unwrap();
    h.set_size(1 << 40);
    h.set_mode(0o644);
    h.set_cksum();
    let endless = std::io::Cursor::new(h.as_bytes().to_vec()).chain(std::io::repeat(b'x'));
    let dst = tmp();
    let options = UnpackOptions {
        max_bytes: 1 << 20,
        ..host()
    };
    let err = unpack(endless, options, into(dst.path())).unwrap_err();
    assert!(matches!(err, ArchiveError::Limit(limit) if limit == 1 << 20), "{err}");
    // No partial file under the entry's name, no temporary left behind.
    assert_eq!(listing(dst.path()), Vec::<String>::new());
    // A stream that ends exactly at its limit is fine.
    let tar = raw_tar(&[(b"f", EntryType::Regular, b"", b"1")]);
    let options = UnpackOptions {
        max_bytes: tar.len() as u64,
        ..host()
    };
    unpack(&tar[..], options, into(dst.path())).unwrap();
}

#[test]
fn a_flood_of_entries_stops_at_the_entry_limit() {
    let names: Vec<Vec<u8>> = (0..20).map(|i| format!("f{i}").into_bytes()).collect();
    let entries: Vec<RawEntry> = names
        .iter()
        .map(|n| (&n[..], EntryType::Regular, &b""[..], &b""[..]))
        .collect();
    let dst = tmp();
    let options = UnpackOptions {
        max_entries: 10,
        ..host()
    };
    let err = unpack(&raw_tar(&entries)[..], options, into(dst.path())).unwrap_err();
    assert!(matches!(err, ArchiveError::TooManyEntries(10)), "{err}");
}

#[test]
fn a_cut_stream_leaves_no_partial_file_under_its_name() {
    let dst = tmp();
    let mut tar = raw_tar(&[(b"big", EntryType::Regular, b"", &[7u8; 8192])]);
    tar.truncate(4096);
    assert!(unpack(&tar[..], host(), into(dst.path())).is_err());
    assert_eq!(listing(dst.path()), Vec::<String>::new());
}

#[test]
fn a_hard_link_to_a_file_already_in_the_destination_is_refused() {
    let dst = tmp();
    fs::write(dst.path().join("secret"), b"s").unwrap();
    let tar = raw_tar(&[(b"grab", EntryType::Link, b"secret", b"")]);
    let err = unpack(&tar[..], host(), into(dst.path())).unwrap_err();
    assert!(err.to_string().contains("hard link"), "{err}");
    assert!(!dst.path().join("grab").exists());
}

/// Replaces `dir` with a symlink to `target` once `after` bytes were read: a guest
/// writing to a shared destination while the host unpacks.
struct SwapAfter<'a> {
    data: &'a [u8],
    at: usize,
    after: usize,
    swap: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl std::io::Read for SwapAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.after {
            if let Some((dir, target)) = self.swap.take() {
                fs::rename(&dir, dir.with_extension("moved")).unwrap();
                symlink(&target, &dir).unwrap();
            }
        }
        let n = buf.len().min(512).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn a_parent_swapped_for_a_symlink_mid_stream_is_not_followed() {
    let outside = tmp();
    let dst = tmp();
    let tar = raw_tar(&[
        (b"d/", EntryType::Directory, b"", b""),
        (b"d/one", EntryType::Regular, b"", b"1"),
        (b"e/", EntryType::Directory, b"", b""),
        (b"d/two", EntryType::Regular, b"", b"2"),
    ]);
    let input = SwapAfter {
        data: &tar,
        at: 0,
        after: 3 * 512,
        swap: Some((dst.path().join("d"), outside.path().to_owned())),
    };
    let err = unpack(input, host(), into(dst.path())).unwrap_err();
    assert!(err.to_string().contains("d/two"), "{err}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
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

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid NUL-terminated strings and a buffer of the length passed.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        io::Error::last_os_error()
    );
}

fn entry_names(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// overlayfs's marks in the `user.overlay.` namespace (its `userxattr` mode), which
/// an unprivileged test can set; the agent reads the `trusted.` ones the same way.
#[test]
fn a_directory_renamed_from_the_image_is_packed_whole_and_opaque() {
    let (upper, lower, merged) = (tmp(), tmp(), tmp());
    let overlay = Overlay {
        upper: upper.path(),
        lower: lower.path(),
        merged: merged.path(),
        xattrs: "user.overlay.",
    };
    // The image has /a with a file and a subdirectory; the container ran `mv /a /b`,
    // then added /b/new, and made /c opaque (`rm -rf /c; mkdir /c`).
    for root in [lower.path(), merged.path()] {
        fs::create_dir_all(root.join("c")).unwrap();
    }
    fs::create_dir_all(lower.path().join("a/sub")).unwrap();
    fs::write(lower.path().join("a/x"), b"x").unwrap();
    fs::write(lower.path().join("a/sub/y"), b"y").unwrap();
    fs::create_dir_all(merged.path().join("b/sub")).unwrap();
    fs::write(merged.path().join("b/x"), b"x").unwrap();
    fs::write(merged.path().join("b/sub/y"), b"y").unwrap();
    fs::write(merged.path().join("b/new"), b"new").unwrap();
    fs::create_dir_all(upper.path().join("b")).unwrap();
    fs::write(upper.path().join("b/new"), b"new").unwrap();
    set_xattr(&upper.path().join("b"), "user.overlay.redirect", b"/a");
    fs::create_dir(upper.path().join("c")).unwrap();
    set_xattr(&upper.path().join("c"), "user.overlay.opaque", b"y");

    let tar = pack_layer(Vec::new(), &overlay).unwrap();
    assert_eq!(
        entry_names(&tar),
        [
            "b",
            "b/.wh..wh..opq",
            "b/new",
            "b/sub",
            "b/x",
            "b/sub/y",
            "c",
            "c/.wh..wh..opq"
        ]
    );
    let mut archive = tar::Archive::new(&tar[..]);
    let mut x = archive
        .entries()
        .unwrap()
        .find(|e| e.as_ref().unwrap().path().unwrap() == Path::new("b/x"))
        .unwrap()
        .unwrap();
    let mut data = String::new();
    x.read_to_string(&mut data).unwrap();
    assert_eq!(data, "x", "a file from the image is packed with its data");

    let shown: Vec<String> = changes(&overlay)
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {}", c.kind, c.path))
        .collect();
    assert_eq!(shown, ["A /b", "A /b/new", "A /b/sub", "A /b/sub/y", "A /b/x", "C /c"]);
}
