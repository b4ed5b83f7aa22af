//! Shared helpers for the rootfs integration tests: a raw tar writer that can also
//! write hostile archives, image builds, `fsck.erofs`, loop mounts and the Python
//! reference reader.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use hull::rootfs::{error_chain, Compression, FlattenError, Flattener, LayerInput, Limits, MemorySink, RootfsCache};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// One tar member, written exactly as described (names are not checked).
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub major: u32,
    pub minor: u32,
    /// Extra PAX records, written before the member.
    pub pax: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(name: &str, typeflag: u8, mode: u32) -> Self {
        Entry {
            name: name.as_bytes().to_vec(),
            typeflag,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            data: Vec::new(),
            major: 0,
            minor: 0,
            pax: Vec::new(),
        }
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        (self.uid, self.gid) = (uid, gid);
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    pub fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.pax.push((format!("SCHILY.xattr.{name}"), value.to_vec()));
        self
    }
}

pub fn dir(name: &str, mode: u32) -> Entry {
    Entry::new(name, b'5', mode)
}

pub fn file(name: &str, data: &[u8], mode: u32) -> Entry {
    Entry {
        data: data.to_vec(),
        ..Entry::new(name, b'0', mode)
    }
}

pub fn symlink(name: &str, target: &str) -> Entry {
    Entry {
        link: target.as_bytes().to_vec(),
        ..Entry::new(name, b'2', 0o777)
    }
}

pub fn hardlink(name: &str, target: &str) -> Entry {
    Entry {
        link: target.as_bytes().to_vec(),
        ..Entry::new(name, b'1', 0o644)
    }
}

pub fn whiteout(name: &str) -> Entry {
    Entry::new(name, b'0', 0o600)
}

pub fn char_dev(name: &str, major: u32, minor: u32) -> Entry {
    Entry {
        major,
        minor,
        ..Entry::new(name, b'3', 0o666)
    }
}

pub fn block_dev(name: &str, major: u32, minor: u32) -> Entry {
    Entry {
        major,
        minor,
        ..Entry::new(name, b'4', 0o660)
    }
}

pub fn fifo(name: &str) -> Entry {
    Entry::new(name, b'6', 0o644)
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{:0width$o}", value, width = field.len() - 1);
    let bytes = text.as_bytes();
    if bytes.len() < field.len() {
        field[..bytes.len()].copy_from_slice(bytes);
        field[bytes.len()] = 0;
    }
}

/// A ustar header block with a correct checksum.
pub fn header(name: &[u8], typeflag: u8, size: u64, e: &Entry) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    octal(&mut h[108..116], e.uid.min(0o7777777));
    octal(&mut h[116..124], e.gid.min(0o7777777));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime);
    h[156] = typeflag;
    let l = e.link.len().min(100);
    h[157..157 + l].copy_from_slice(&e.link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(e.major));
    octal(&mut h[337..345], u64::from(e.minor));
    set_checksum(&mut h);
    h
}

pub fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
}

/// PAX records with correct self-including lengths.
pub fn pax_body(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let payload = key.len() + value.len() + 3;
        let mut len = payload + 1;
        while len != payload + len.to_string().len() {
            len = payload + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {key}=").as_bytes());
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(512), 0);
}

/// Appends `e` to `out`, with a PAX header when names, links or ids need one.
pub fn append(out: &mut Vec<u8>, e: &Entry) {
    let mut pax = e.pax.clone();
    if e.name.len() > 100 {
        pax.push(("path".into(), e.name.clone()));
    }
    if e.link.len() > 100 {
        pax.push(("linkpath".into(), e.link.clone()));
    }
    if e.uid > 0o7777777 {
        pax.push(("uid".into(), e.uid.to_string().into_bytes()));
    }
    if e.gid > 0o7777777 {
        pax.push(("gid".into(), e.gid.to_string().into_bytes()));
    }
    if !pax.is_empty() {
        let body = pax_body(&pax);
        out.extend_from_slice(&header(b"PaxHeader", b'x', body.len() as u64, e));
        out.extend_from_slice(&body);
        pad(out);
    }
    out.extend_from_slice(&header(&e.name, e.typeflag, e.data.len() as u64, e));
    out.extend_from_slice(&e.data);
    pad(out);
}

/// A whole layer: the members, then the end-of-archive marker.
pub fn layer(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append(&mut out, e);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The digest tests give layer `n` (1-based) in memory builds.
pub fn layer_digest(n: usize) -> String {
    format!("sha256:{:064x}", n)
}

/// Flattens in memory; errors come back as they are.
pub fn flatten_with(layers: &[Vec<u8>], limits: Limits) -> Result<Vec<u8>, FlattenError> {
    let mut flattener = Flattener::new(MemorySink::default(), limits);
    for (i, bytes) in layers.iter().enumerate() {
        flattener.add_layer(&layer_digest(i + 1), bytes.as_slice())?;
    }
    Ok(flattener.finish()?.sink.0)
}

pub fn flatten(layers: &[Vec<u8>]) -> Vec<u8> {
    flatten_with(layers, Limits::default()).unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

/// Layers written as blobs, plus the image built from them through the cache.
pub struct Built {
    pub dir: TempDir,
    pub image: PathBuf,
    pub layer_paths: Vec<PathBuf>,
}

/// Writes `layers` (uncompressed tar bytes) as blobs compressed by `compression`.
pub fn write_layers(dir: &Path, layers: &[Vec<u8>], compression: Compression) -> Vec<LayerInput> {
    layers
        .iter()
        .enumerate()
        .map(|(i, tar)| {
            let blob = match compression {
                Compression::None => tar.clone(),
                Compression::Gzip => gzip(tar),
                Compression::Zstd => zstd(tar),
            };
            let path = dir.join(format!("layer{i}.blob"));
            std::fs::write(&path, &blob).unwrap();
            LayerInput {
                digest: sha256(&blob),
                diff_id: sha256(tar),
                compression,
                path,
            }
        })
        .collect()
}

pub fn build_compressed(layers: &[Vec<u8>], compression: Compression) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let inputs = write_layers(dir.path(), layers, compression);
    let cache = RootfsCache::new(dir.path().join("rootfs"), Limits::default());
    let built = cache.ensure(&inputs).unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let layer_paths = inputs.into_iter().map(|l| l.path).collect();
    Built {
        dir,
        image: built.path,
        layer_paths,
    }
}

/// Builds through the cache from uncompressed layers, then runs `fsck.erofs`.
pub fn build(layers: &[Vec<u8>]) -> Built {
    let built = build_compressed(layers, Compression::None);
    fsck(&built.image);
    built
}

/// `fsck.erofs` with data extraction checks must accept the image.
pub fn fsck(image: &Path) {
    let out = Command::new("fsck.erofs")
        .arg("--extract")
        .arg(image)
        .output()
        .expect("fsck.erofs runs");
    assert!(
        out.status.success(),
        "fsck.erofs rejected {}: {}{}",
        image.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A read-only loop mount of an image, unmounted on drop.
pub struct Mounted {
    pub dir: TempDir,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Mounts `image` read-only through a loop device. In CI (`CI=true`) failing to mount
/// fails the test; elsewhere it prints why the check was skipped.
pub fn mount(image: &Path) -> Option<Mounted> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("mount")
        .args(["-t", "erofs", "-o", "loop,ro"])
        .arg(image)
        .arg(dir.path())
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Mounted { dir }),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            };
            assert!(!in_ci(), "CI=true but mounting {} failed: {why}", image.display());
            eprintln!("skipped: mount comparison of {} (cannot mount: {why})", image.display());
            None
        }
    }
}

/// Compares the mounted image with the Python reference reader's application of the
/// same layers.
pub fn compare_with_reference(built: &Built) {
    let Some(mounted) = mount(&built.image) else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rootfs_reference.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("compare")
        .arg(mounted.dir.path())
        .args(&built.layer_paths)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "image differs from the reference reader:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds, checks with fsck, and compares with the reference reader.
pub fn build_and_compare(layers: &[Vec<u8>]) -> Built {
    let built = build(layers);
    compare_with_reference(&built);
    built
}

/// The entry index and layer digest of an entry error, with the whole message.
pub fn entry_error(err: &FlattenError) -> (String, u64, String) {
    match err {
        FlattenError::Entry { digest, entry, .. } => (digest.clone(), *entry, error_chain(err)),
        other => panic!("expected an entry error, got: {}", error_chain(other)),
    }
}
