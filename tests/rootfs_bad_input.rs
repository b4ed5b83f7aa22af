//! Hostile layers (docs SECURITY.md, "Image layers"): each gives one clear error
//! naming the layer digest and the entry index, or a documented re-rooting; nothing
//! is written outside the image; nothing panics.

mod rootfs_support;

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

use hull::rootfs::{error_chain, Compression, FlattenError, Flattener, Limits, MemorySink, RootfsCache};
use rootfs_support::*;

/// Asserts flattening fails at `entry` of layer `layer_no` with a message containing `needle`.
fn assert_entry_error(layers: &[Vec<u8>], limits: Limits, layer_no: usize, entry: u64, needle: &str) {
    let err = flatten_with(layers, limits).expect_err("hostile input must be refused");
    let (digest, index, message) = entry_error(&err);
    assert_eq!(digest, layer_digest(layer_no), "{message}");
    assert_eq!(index, entry, "{message}");
    assert!(message.contains(needle), "`{message}` lacks `{needle}`");
    assert!(message.contains(&format!("layer {} entry {entry}", layer_digest(layer_no)).replace(" entry", ": entry")));
}

fn ok_file() -> Entry {
    file("fine", b"fine", 0o644)
}

#[test]
fn path_traversal_names_are_rejected_with_layer_and_entry_index() {
    for name in ["../../x", "a/../../x", "a/..", "/../etc/passwd", "ok/../x"] {
        let layers = [layer(&[ok_file()]), layer(&[ok_file(), file(name, b"x", 0o644)])];
        assert_entry_error(&layers, Limits::default(), 2, 1, "climbs out");
    }
}

#[test]
fn pax_path_overrides_the_ustar_name_and_is_checked_too() {
    let mut evil = file("innocent", b"x", 0o644);
    evil.pax.push(("path".into(), b"../../evil".to_vec()));
    assert_entry_error(&[layer(&[evil])], Limits::default(), 1, 0, "climbs out");
}

#[test]
fn gnu_long_name_is_checked_like_any_name() {
    let mut out = Vec::new();
    let long = format!("{}/../../../x", "d".repeat(120));
    let e = file("short", b"", 0o644);
    out.extend_from_slice(&header(b"././@LongLink", b'L', long.len() as u64 + 1, &e));
    out.extend_from_slice(long.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(512), 0);
    out.extend_from_slice(&header(b"short", b'0', 0, &e));
    out.extend_from_slice(&[0; 1024]);
    assert_entry_error(&[out], Limits::default(), 1, 0, "climbs out");
}

#[test]
fn absolute_and_dotted_names_are_rerooted_inside_the_image() {
    let l1 = layer(&[
        file("/etc/abs", b"1", 0o644),
        file("./rel", b"2", 0o644),
        file("a//b/./c", b"3", 0o644),
    ]);
    build_and_compare(&[l1]);
}

#[test]
fn symlink_named_dot_cannot_replace_the_root() {
    for name in [".", "./", "/"] {
        assert_entry_error(
            &[layer(&[symlink(name, "/etc")])],
            Limits::default(),
            1,
            0,
            "root can only be a directory",
        );
    }
}

#[test]
fn symlink_loops_are_refused() {
    let l1 = layer(&[symlink("a", "b"), symlink("b", "a"), file("a/f", b"x", 0o644)]);
    assert_entry_error(&[l1], Limits::default(), 1, 2, "symbolic links followed");
}

#[test]
fn writing_below_a_regular_file_is_refused() {
    let l1 = layer(&[
        file("etc", b"not a dir", 0o644),
        symlink("via", "/etc"),
        file("via/passwd", b"x", 0o644),
    ]);
    assert_entry_error(&[l1], Limits::default(), 1, 2, "is not a directory");
}

#[test]
fn symlink_writes_never_touch_the_host() {
    let marker = format!("hull-rootfs-escape-{}", std::process::id());
    let l1 = layer(&[
        symlink("x", "/"),
        symlink("t", "/tmp"),
        file(&format!("x/tmp/{marker}"), b"x", 0o644),
    ]);
    let l2 = layer(&[file(&format!("t/{marker}-2"), b"y", 0o644)]);
    let built = build_and_compare(&[l1, l2]);
    assert!(!std::path::Path::new("/tmp").join(&marker).exists());
    assert!(!std::path::Path::new("/tmp").join(format!("{marker}-2")).exists());
    if let Some(m) = mount(&built.image) {
        assert!(m.dir.path().join("tmp").join(&marker).is_file());
    }
}

#[test]
fn escaping_hard_link_targets_are_refused() {
    let l1 = layer(&[ok_file(), hardlink("h", "../../etc/passwd")]);
    assert_entry_error(&[l1], Limits::default(), 1, 1, "climbs out");
}

#[test]
fn dangling_hard_links_are_refused() {
    let l1 = layer(&[ok_file(), hardlink("h", "missing")]);
    assert_entry_error(&[l1], Limits::default(), 1, 1, "does not exist");
    // A target hidden by a whiteout is gone as well.
    let lower = layer(&[file("gone", b"g", 0o644)]);
    let upper = layer(&[whiteout(".wh.gone"), hardlink("h", "gone")]);
    assert_entry_error(&[lower, upper], Limits::default(), 2, 1, "does not exist");
}

#[test]
fn hard_links_to_directories_are_refused() {
    let l1 = layer(&[dir("d", 0o755), hardlink("h", "d")]);
    assert_entry_error(&[l1], Limits::default(), 1, 1, "is a directory");
    let l1 = layer(&[hardlink("h", "/")]);
    assert_entry_error(&[l1], Limits::default(), 1, 0, "is a directory");
}

#[test]
fn hard_links_through_symlinked_parents_resolve_inside_the_root() {
    let l1 = layer(&[
        dir("real", 0o755),
        file("real/f", b"f", 0o644),
        symlink("alias", "/real"),
        hardlink("h", "alias/f"),
    ]);
    build_and_compare(&[l1]);
}

#[test]
fn invalid_whiteout_forms_are_refused() {
    for name in [".wh.", "d/.wh..", "d/.wh...", "d/.wh..wh.foo", ".wh..wh..opq2"] {
        let l1 = layer(&[dir("d", 0o755), whiteout(name)]);
        assert_entry_error(&[l1], Limits::default(), 1, 1, "invalid whiteout");
    }
}

#[test]
fn truncated_data_is_refused() {
    let mut bytes = layer(&[ok_file(), file("big", &[1u8; 5000], 0o644)]);
    bytes.truncate(512 * 2 + 512 + 3000);
    assert_entry_error(&[bytes], Limits::default(), 1, 1, "before the end of the entry");
}

#[test]
fn truncated_header_is_refused() {
    let mut bytes = layer(&[ok_file(), ok_file()]);
    bytes.truncate(512 * 2 + 100);
    assert_entry_error(&[bytes], Limits::default(), 1, 1, "inside a header");
}

#[test]
fn header_checksum_errors_are_refused() {
    let mut bytes = layer(&[ok_file(), ok_file()]);
    bytes[1024 + 10] ^= 0x01;
    assert_entry_error(&[bytes], Limits::default(), 1, 1, "checksum");
}

#[test]
fn garbage_in_numeric_fields_is_refused() {
    let mut bytes = layer(&[ok_file()]);
    bytes[124..136].copy_from_slice(b"12x4567\0\0\0\0\0");
    let mut h: [u8; 512] = bytes[..512].try_into().unwrap();
    set_checksum(&mut h);
    bytes[..512].copy_from_slice(&h);
    assert_entry_error(&[bytes], Limits::default(), 1, 0, "not a valid number");
}

#[test]
fn pax_size_disagreeing_with_header_size_is_refused() {
    let mut e = file("f", &[0u8; 600], 0o644);
    e.pax.push(("size".into(), b"100".to_vec()));
    assert_entry_error(
        &[layer(&[ok_file(), e])],
        Limits::default(),
        1,
        1,
        "pax size 100 disagrees with the header size 600",
    );
}

#[test]
fn oversized_extension_headers_are_refused_before_reading_them() {
    let e = file("f", b"", 0o644);
    let mut out = header(b"PaxHeader", b'x', 1 << 32, &e).to_vec();
    out.extend_from_slice(&[b'9'; 512]);
    assert_entry_error(&[out], Limits::default(), 1, 0, "exceeds the limit");
}

#[test]
fn extension_without_a_member_is_refused() {
    let e = file("f", b"", 0o644);
    let body = pax_body(&[("path".into(), b"x".to_vec())]);
    let mut out = header(b"PaxHeader", b'x', body.len() as u64, &e).to_vec();
    out.extend_from_slice(&body);
    out.resize(1024, 0);
    out.extend_from_slice(&[0; 1024]);
    assert_entry_error(&[out], Limits::default(), 1, 0, "not followed by an entry");
}

#[test]
fn sparse_entries_are_refused() {
    let sparse = Entry {
        typeflag: b'S',
        ..file("s", b"", 0o644)
    };
    assert_entry_error(&[layer(&[sparse])], Limits::default(), 1, 0, "sparse");
    let mut pax_sparse = file("s", b"", 0o644);
    pax_sparse.pax.push(("GNU.sparse.major".into(), b"1".to_vec()));
    assert_entry_error(&[layer(&[pax_sparse])], Limits::default(), 1, 0, "sparse");
}

#[test]
fn non_utf8_and_nul_names_are_refused() {
    let mut e = file("x", b"", 0o644);
    e.name = b"bad-\xff-name".to_vec();
    assert_entry_error(&[layer(&[e])], Limits::default(), 1, 0, "not UTF-8");
    let mut e = file("x", b"", 0o644);
    e.pax.push(("path".into(), b"a\0b".to_vec()));
    assert_entry_error(&[layer(&[e])], Limits::default(), 1, 0, "NUL");
}

#[test]
fn ids_and_device_numbers_out_of_range_are_refused_not_wrapped() {
    let big_uid = file("f", b"", 0o644).owner(1 << 32, 0);
    assert_entry_error(
        &[layer(&[big_uid])],
        Limits::default(),
        1,
        0,
        "uid 4294967296 is out of range",
    );
    let big_gid = file("f", b"", 0o644).owner(0, u64::MAX);
    assert_entry_error(&[layer(&[big_gid])], Limits::default(), 1, 0, "out of range");
    let dev = char_dev("d", 4096, 0);
    assert_entry_error(&[layer(&[dev])], Limits::default(), 1, 0, "device number 4096:0");
}

#[test]
fn xattrs_without_an_erofs_prefix_are_refused() {
    let e = file("f", b"", 0o644).xattr("system.nfs4_acl", b"x");
    assert_entry_error(&[layer(&[e])], Limits::default(), 1, 0, "no EROFS name prefix");
}

#[test]
fn a_file_claiming_2_pow_62_bytes_is_refused_before_any_write() {
    let e = file("huge", b"", 0o644);
    let mut out = Vec::new();
    let body = pax_body(&[("size".into(), (1u64 << 62).to_string().into_bytes())]);
    out.extend_from_slice(&header(b"PaxHeader", b'x', body.len() as u64, &e));
    out.extend_from_slice(&body);
    out.resize(out.len().next_multiple_of(512), 0);
    let mut h = header(b"huge", b'0', 0, &e);
    h[124] = 0x80; // base-256 size field
    h[125..136].fill(0);
    h[128] = 0x40;
    set_checksum(&mut h);
    out.extend_from_slice(&h);
    assert_entry_error(&[out], Limits::default(), 1, 0, "would exceed");
}

#[test]
fn trailing_zeros_count_against_the_layer_limit() {
    let mut bytes = layer(&[ok_file()]);
    bytes.resize(bytes.len() + (2 << 20), 0);
    let limits = Limits {
        max_layer_bytes: 1 << 20,
        ..Limits::default()
    };
    assert_entry_error(&[bytes.clone()], limits, 1, 1, "exceeds 1048576 bytes");
    flatten(&[bytes]);
}

/// A reader of `zeros` zero bytes after a tar header for one file of that size.
fn zero_file_layer(zeros: u64) -> impl Read {
    let e = file("bomb", b"", 0o644);
    let mut h = header(b"bomb", b'0', 0, &e);
    let size = format!("{zeros:011o}");
    h[124..135].copy_from_slice(size.as_bytes());
    set_checksum(&mut h);
    io::Cursor::new(h.to_vec()).chain(io::repeat(0).take(zeros + 1024))
}

#[test]
fn gzip_bomb_stops_at_the_layer_limit() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io::copy(&mut zero_file_layer(128 << 20), &mut enc).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 512 << 10, "a bomb: {} bytes compressed", bomb.len());
    let limits = Limits {
        max_layer_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut flattener = Flattener::new(MemorySink::default(), limits);
    let err = flattener
        .add_layer("sha256:bomb", flate2::read::MultiGzDecoder::new(bomb.as_slice()))
        .unwrap_err();
    let (digest, entry, message) = entry_error(&err);
    assert_eq!((digest.as_str(), entry), ("sha256:bomb", 0));
    assert!(message.contains("exceeds 16777216 bytes"), "{message}");
}

#[test]
fn zstd_bomb_stops_at_the_layer_limit() {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    io::copy(&mut zero_file_layer(256 << 20), &mut enc).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 256 << 10, "a bomb: {} bytes compressed", bomb.len());
    let limits = Limits {
        max_layer_bytes: 16 << 20,
        ..Limits::default()
    };
    let mut flattener = Flattener::new(MemorySink::default(), limits);
    let decoder = zstd::stream::read::Decoder::new(bomb.as_slice()).unwrap();
    let err = flattener.add_layer("sha256:zbomb", decoder).unwrap_err();
    let (digest, entry, message) = entry_error(&err);
    assert_eq!((digest.as_str(), entry), ("sha256:zbomb", 0));
    assert!(message.contains("exceeds 16777216 bytes"), "{message}");
}

/// Streams a layer of `count` empty files spread over directories of 1000, without
/// holding it in memory.
struct ManyFiles {
    next: u64,
    count: u64,
    template: [u8; 512],
    template_sum: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl ManyFiles {
    fn new(count: u64) -> Self {
        let mut template = header(b"", b'0', 0, &file("x", b"", 0o644));
        template[148..156].fill(b' ');
        let template_sum = template.iter().map(|&b| u64::from(b)).sum();
        ManyFiles {
            next: 0,
            count,
            template,
            template_sum,
            buf: Vec::with_capacity(1024),
            pos: 0,
        }
    }

    fn next_header(&mut self) {
        let (dir, file) = (self.next / 1000, self.next % 1000);
        let name = [
            b'd',
            digit(dir, 1000),
            digit(dir, 100),
            digit(dir, 10),
            digit(dir, 1),
            b'/',
            b'f',
            digit(file, 1000),
            digit(file, 100),
            digit(file, 10),
            digit(file, 1),
        ];
        let mut h = self.template;
        h[..name.len()].copy_from_slice(&name);
        let sum = self.template_sum + name.iter().map(|&b| u64::from(b)).sum::<u64>();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        self.buf.extend_from_slice(&h);
    }
}

fn digit(value: u64, place: u64) -> u8 {
    b'0' + ((value / place) % 10) as u8
}

impl Read for ManyFiles {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.next > self.count {
                return Ok(0);
            }
            if self.next == self.count {
                self.buf.extend_from_slice(&[0; 1024]);
            } else {
                self.next_header();
            }
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn a_million_files_build_within_default_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("million.erofs");
    let out = std::fs::File::create(&path).unwrap();
    let mut flattener = Flattener::new(&out, Limits::default());
    flattener
        .add_layer("sha256:million", ManyFiles::new(1_000_000))
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let done = flattener.finish().unwrap();
    // The files, their 1000 directories and the root.
    assert_eq!(done.info.inodes, 1_000_000 + 1000 + 1);
    if let Some(m) = mount(&path) {
        let count = std::fs::read_dir(m.dir.path().join("d0999")).unwrap().count();
        assert_eq!(count, 1000);
    }
}

#[test]
fn inode_limit_refuses_a_million_files_early() {
    let limits = Limits {
        max_inodes: 10_000,
        ..Limits::default()
    };
    let mut flattener = Flattener::new(MemorySink::default(), limits);
    let err = flattener
        .add_layer("sha256:million", ManyFiles::new(1_000_000))
        .unwrap_err();
    let (_, entry, message) = entry_error(&err);
    // 10_000 inodes: the root, 10 directories and 9989 files.
    assert_eq!(entry, 9989, "{message}");
    assert!(
        message.contains("number of inodes exceeds the limit of 10000"),
        "{message}"
    );
}

fn deep_layer(depth: usize) -> Vec<u8> {
    let name = format!("{}f", "a/".repeat(depth));
    layer(&[file(&name, b"deep", 0o644)])
}

#[test]
fn hundred_thousand_deep_directories_hit_the_depth_limit() {
    let limits = Limits {
        max_path_bytes: 1 << 20,
        ..Limits::default()
    };
    assert_entry_error(
        &[deep_layer(100_000)],
        limits,
        1,
        0,
        "directory depth exceeds the limit of 1024",
    );
    assert_entry_error(
        &[deep_layer(100_000)],
        Limits::default(),
        1,
        0,
        "over the limit of 4096",
    );
}

#[test]
fn hundred_thousand_deep_directories_build_iteratively_when_allowed() {
    let limits = Limits {
        max_path_bytes: 1 << 20,
        max_depth: 200_000,
        ..Limits::default()
    };
    let image = flatten_with(&[deep_layer(100_000)], limits).unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    // Root, 100_000 directories and the file: at least one inode slot each.
    assert!(image.len() > 100_001 * 32);
}

#[test]
fn seventy_thousand_links_to_one_file_build_with_an_exact_link_count() {
    let mut entries = vec![file("target", b"shared", 0o644)];
    entries.extend((0..70_000).map(|i| hardlink(&format!("l/{i}"), "target")));
    let built = build(&[layer(&entries)]);
    if let Some(m) = mount(&built.image) {
        assert_eq!(std::fs::metadata(m.dir.path().join("l/69999")).unwrap().nlink(), 70_001);
    }
    let limits = Limits {
        max_hard_links: 65_000,
        ..Limits::default()
    };
    assert_entry_error(&[layer(&entries)], limits, 1, 65_000, "hard links to one inode exceeds");
}

#[test]
fn diff_id_mismatch_is_refused_and_nothing_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let layers = [layer(&[ok_file()]), layer(&[file("second", b"2", 0o644)])];
    let mut inputs = write_layers(dir.path(), &layers, Compression::Gzip);
    inputs[1].diff_id = sha256(b"something else");
    let cache_dir = dir.path().join("rootfs");
    let cache = RootfsCache::new(cache_dir.clone(), Limits::default());
    let err = cache.ensure(&inputs).unwrap_err();
    match &err {
        FlattenError::DiffIdMismatch {
            digest,
            expected,
            actual,
        } => {
            assert_eq!(digest, &inputs[1].digest);
            assert_eq!(expected, &inputs[1].diff_id);
            assert_eq!(actual, &sha256(&layers[1]));
        }
        other => panic!("expected a diff_id mismatch, got {}", error_chain(other)),
    }
    let left: Vec<_> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.iter().all(|n| n.to_string_lossy().ends_with(".lock")), "{left:?}");
}
