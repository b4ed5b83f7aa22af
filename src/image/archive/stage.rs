//! Staging: an archive's members streamed into locked temp files in the store's
//! `tmp/`, hashed as they pass (and, for gzip or zstd members, hashed decompressed
//! too). Staged files are removed when dropped unless published under their digest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::member::{claimed_digest, link_target, normalise, sniff};
use super::{ArchiveError, Result, MAX_MEMBERS, MAX_METADATA_BYTES};
use crate::image::digest::Digest;
use crate::image::manifest::{Compression, MAX_CONFIG_BYTES};
use crate::image::store::{fs, ImageStore, StoreError};

/// Members read whole into memory and never staged as blobs.
const METADATA: &[&str] = &["manifest.json", "index.json", "oci-layout", "repositories"];
/// Most links followed to reach a regular member.
const MAX_LINK_HOPS: usize = 8;
const CHUNK: usize = 256 * 1024;

/// A private temp file in the store's `tmp/`, locked while open, removed on drop
/// unless published.
pub(super) struct TempFile {
    pub file: File,
    path: PathBuf,
    published: bool,
}

impl TempFile {
    pub fn create(store: &ImageStore) -> Result<TempFile> {
        let dir = store.tmp_dir();
        let (file, path) = fs::create_temp(&dir)
            .map_err(|source| ArchiveError::Io { op: "create temp file in", path: dir, source })?;
        Ok(TempFile { file, path, published: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs and renames onto `dest`.
    fn publish(&mut self, dest: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        fs::publish(&self.path, dest)?;
        self.published = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One staged member with what its bytes hash to.
pub(super) struct Staged {
    temp: TempFile,
    pub digest: Digest,
    pub size: u64,
    /// Compression and digest of the decompressed content, for compressed members.
    pub uncompressed: Option<(Compression, Digest)>,
}

impl Staged {
    /// The compression and digest of the tar inside, as a diff_id is computed.
    pub fn diff_id(&self) -> (Compression, &Digest) {
        match &self.uncompressed {
            Some((c, d)) => (*c, d),
            None => (Compression::None, &self.digest),
        }
    }
}

/// Everything read from one archive.
#[derive(Default)]
pub(super) struct Members {
    staged: HashMap<String, Staged>,
    json: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
    json_bytes: u64,
}

impl Members {
    /// Streams a tar archive into the store's temp area.
    pub fn read(store: &ImageStore, reader: impl Read) -> Result<Members> {
        let mut members = Members::default();
        let mut archive = tar::Archive::new(reader);
        let mut last = String::from("(start of archive)");
        let stream_err = |after: &str| {
            let after = after.to_owned();
            move |source| ArchiveError::Stream { after, source }
        };
        for entry in archive.entries().map_err(stream_err(&last))? {
            let mut entry = entry.map_err(stream_err(&last))?;
            let name = normalise(&entry.path_bytes())?;
            members.add(store, &name, &mut entry)?;
            last = name;
        }
        Ok(members)
    }

    fn add<R: Read>(&mut self, store: &ImageStore, name: &str, entry: &mut tar::Entry<R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().ok_or_else(|| ArchiveError::Link { member: name.to_owned() })?;
            let target = link_target(name, &target, kind.is_symlink())?;
            self.links.insert(name.to_owned(), target);
            return Ok(());
        }
        if !kind.is_file() && !kind.is_contiguous() {
            return Ok(());
        }
        if self.staged.len() + self.json.len() >= MAX_MEMBERS {
            return Err(ArchiveError::TooManyMembers);
        }
        claimed_digest(name)?;
        let size = entry.header().size().map_err(|source| ArchiveError::Member { member: name.to_owned(), source })?;
        if METADATA.contains(&name) {
            let bytes = self.read_metadata(name, size, entry)?;
            self.json.insert(name.to_owned(), bytes);
            return Ok(());
        }
        let keep = size <= MAX_CONFIG_BYTES && self.json_bytes + size <= MAX_METADATA_BYTES;
        let (staged, json) = stage(store, name, entry, keep)?;
        if let Some(bytes) = json {
            self.json_bytes += bytes.len() as u64;
            self.json.insert(name.to_owned(), bytes);
        }
        self.staged.insert(name.to_owned(), staged);
        Ok(())
    }

    fn read_metadata(&mut self, name: &str, size: u64, entry: &mut impl Read) -> Result<Vec<u8>> {
        if size > MAX_CONFIG_BYTES || self.json_bytes + size > MAX_METADATA_BYTES {
            return Err(ArchiveError::MetadataTooLarge { member: name.to_owned() });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        Read::take(&mut *entry, size)
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Member { member: name.to_owned(), source })?;
        self.json_bytes += bytes.len() as u64;
        Ok(bytes)
    }

    /// Follows links from `name` to the regular member they reach.
    pub fn resolve<'a>(&'a self, name: &'a str) -> Result<&'a str> {
        let mut current = name;
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(current) {
                Some(target) => current = target,
                None => return Ok(current),
            }
        }
        Err(ArchiveError::Link { member: name.to_owned() })
    }

    /// The in-memory bytes of a JSON member.
    pub fn json(&self, name: &str, image: &str) -> Result<&[u8]> {
        let missing = || ArchiveError::MissingMember { member: name.to_owned(), image: image.to_owned() };
        self.json.get(self.resolve(name)?).map(Vec::as_slice).ok_or_else(missing)
    }

    /// Whether the archive holds a member (metadata or staged) of that name.
    pub fn has(&self, name: &str) -> bool {
        self.resolve(name).is_ok_and(|n| self.json.contains_key(n) || self.staged.contains_key(n))
    }

    /// A staged member.
    pub fn staged(&self, name: &str, image: &str) -> Result<&Staged> {
        let missing = || ArchiveError::MissingMember { member: name.to_owned(), image: image.to_owned() };
        self.staged.get(self.resolve(name)?).ok_or_else(missing)
    }

    /// Publishes a staged member under its digest, unless the store already has it.
    pub fn publish(&mut self, store: &ImageStore, name: &str) -> std::result::Result<(), StoreError> {
        let Some(key) = self.resolve(name).ok().map(str::to_owned) else { return Ok(()) };
        let Some(staged) = self.staged.get_mut(&key) else { return Ok(()) };
        if staged.temp.published {
            return Ok(());
        }
        let _lock = store.lock_blob(&staged.digest)?;
        if store.has_blob(&staged.digest) {
            return Ok(());
        }
        let dest = store.blob_path(&staged.digest);
        staged
            .temp
            .publish(&dest)
            .map_err(|source| StoreError::Io { op: "publish", path: dest.clone(), source })
    }
}

/// Streams one member into a temp file, hashing it plain and decompressed; keeps a
/// copy in memory when `keep` and the content looks like JSON.
fn stage(store: &ImageStore, member: &str, reader: &mut impl Read, keep: bool) -> Result<(Staged, Option<Vec<u8>>)> {
    let read_err = |source| ArchiveError::Member { member: member.to_owned(), source };
    let mut temp = TempFile::create(store)?;
    let mut head = Vec::with_capacity(4096);
    Read::take(&mut *reader, 4096).read_to_end(&mut head).map_err(read_err)?;
    let compression = sniff(&head);
    let mut unpack = Unpack::start(compression);
    let looks_json = matches!(head.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
    let mut json = (keep && looks_json).then(Vec::new);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = head;
    loop {
        if buf.is_empty() {
            break;
        }
        if let Err(source) = temp.file.write_all(&buf) {
            return Err(ArchiveError::Io { op: "write", path: temp.path().to_owned(), source });
        }
        hasher.update(&buf);
        unpack.write(&buf);
        if let Some(j) = json.as_mut() {
            j.extend_from_slice(&buf);
        }
        size += buf.len() as u64;
        buf.resize(CHUNK, 0);
        let n = read_some(reader, &mut buf).map_err(read_err)?;
        buf.truncate(n);
    }
    let uncompressed = unpack.finish().map(|d| (compression, d));
    let staged = Staged { temp, digest: Digest::from_hasher(hasher), size, uncompressed };
    Ok((staged, json))
}

fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A sink that only hashes what it is given.
struct HashSink(Sha256);

impl Write for HashSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses a member as it streams by, to hash the tar inside. Content that turns
/// out not to decompress simply has no uncompressed digest.
enum Unpack {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<HashSink>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, HashSink>>),
    Failed,
}

impl Unpack {
    fn start(compression: Compression) -> Unpack {
        let sink = HashSink(Sha256::new());
        match compression {
            Compression::None => Unpack::Plain,
            Compression::Gzip => Unpack::Gzip(Box::new(flate2::write::MultiGzDecoder::new(sink))),
            Compression::Zstd => match zstd::stream::write::Decoder::new(sink) {
                Ok(d) => Unpack::Zstd(Box::new(d)),
                Err(_) => Unpack::Failed,
            },
        }
    }

    fn write(&mut self, buf: &[u8]) {
        let result = match self {
            Unpack::Plain | Unpack::Failed => return,
            Unpack::Gzip(d) => d.write_all(buf),
            Unpack::Zstd(d) => d.write_all(buf),
        };
        if result.is_err() {
            *self = Unpack::Failed;
        }
    }

    fn finish(self) -> Option<Digest> {
        let sink = match self {
            Unpack::Plain | Unpack::Failed => return None,
            Unpack::Gzip(d) => d.finish().ok()?,
            Unpack::Zstd(mut d) => {
                d.flush().ok()?;
                d.into_inner()
            }
        };
        Some(Digest::from_hasher(sink.0))
    }
}
