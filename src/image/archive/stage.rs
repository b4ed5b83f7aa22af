//! Staging: an archive's members streamed into locked temp files in the store's
//! `tmp/`, hashed as they pass. A compressed member is decompressed (to check its
//! diff_id) only if an image references it as a layer, so compression bombs among
//! unreferenced members cost nothing. Staged files are removed when dropped unless
//! published under their digest.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
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
        let (file, path) = fs::create_temp(&dir).map_err(|source| ArchiveError::Io {
            op: "create temp file in",
            path: dir,
            source,
        })?;
        Ok(TempFile {
            file,
            path,
            published: false,
        })
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
    /// The compression its first bytes show.
    pub compression: Compression,
    /// The diff_id once computed: a layer shared by several images is read once.
    diff_id: std::cell::OnceCell<Digest>,
}

impl Staged {
    /// The digest of the tar inside, as a diff_id is computed: the content itself
    /// when plain, else the content decompressed (read back from the temp file).
    pub fn diff_id(&self) -> io::Result<Digest> {
        if let Some(d) = self.diff_id.get() {
            return Ok(d.clone());
        }
        let digest = self.compute_diff_id()?;
        Ok(self.diff_id.get_or_init(|| digest).clone())
    }

    fn compute_diff_id(&self) -> io::Result<Digest> {
        if self.compression == Compression::None {
            return Ok(self.digest.clone());
        }
        let mut file = self.temp.file.try_clone()?;
        file.rewind()?;
        let file = io::BufReader::with_capacity(CHUNK, file);
        let mut decoder: Box<dyn Read> = match self.compression {
            Compression::None => return Ok(self.digest.clone()),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        };
        let mut sink = HashSink(Sha256::new());
        io::copy(&mut decoder, &mut sink)?;
        Ok(Digest::from_hasher(sink.0))
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
            let target = entry.link_name_bytes().ok_or_else(|| ArchiveError::Link {
                member: name.to_owned(),
            })?;
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
        let size = entry.header().size().map_err(|source| ArchiveError::Member {
            member: name.to_owned(),
            source,
        })?;
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
            return Err(ArchiveError::MetadataTooLarge {
                member: name.to_owned(),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        Read::take(&mut *entry, size)
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Member {
                member: name.to_owned(),
                source,
            })?;
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
        Err(ArchiveError::Link {
            member: name.to_owned(),
        })
    }

    /// The in-memory bytes of a JSON member.
    pub fn json(&self, name: &str, image: &str) -> Result<&[u8]> {
        let missing = || ArchiveError::MissingMember {
            member: name.to_owned(),
            image: image.to_owned(),
        };
        self.json
            .get(self.resolve(name)?)
            .map(Vec::as_slice)
            .ok_or_else(missing)
    }

    /// Whether the archive holds a member (metadata or staged) of that name.
    pub fn has(&self, name: &str) -> bool {
        self.resolve(name)
            .is_ok_and(|n| self.json.contains_key(n) || self.staged.contains_key(n))
    }

    /// A staged member.
    pub fn staged(&self, name: &str, image: &str) -> Result<&Staged> {
        let missing = || ArchiveError::MissingMember {
            member: name.to_owned(),
            image: image.to_owned(),
        };
        self.staged.get(self.resolve(name)?).ok_or_else(missing)
    }

    /// Publishes a staged member under its digest, unless the store already has it.
    pub fn publish(&mut self, store: &ImageStore, name: &str) -> std::result::Result<(), StoreError> {
        let Some(key) = self.resolve(name).ok().map(str::to_owned) else {
            return Ok(());
        };
        let Some(staged) = self.staged.get_mut(&key) else {
            return Ok(());
        };
        if staged.temp.published {
            return Ok(());
        }
        let _lock = store.lock_blob(&staged.digest)?;
        if store.has_blob(&staged.digest) {
            return Ok(());
        }
        let dest = store.blob_path(&staged.digest);
        staged.temp.publish(&dest).map_err(|source| StoreError::Io {
            op: "publish",
            path: dest.clone(),
            source,
        })
    }
}

/// Streams one member into a temp file, hashing it; keeps a copy in memory when
/// `keep` and the content looks like JSON.
fn stage(store: &ImageStore, member: &str, reader: &mut impl Read, keep: bool) -> Result<(Staged, Option<Vec<u8>>)> {
    let read_err = |source| ArchiveError::Member {
        member: member.to_owned(),
        source,
    };
    let mut temp = TempFile::create(store)?;
    let mut head = Vec::with_capacity(4096);
    Read::take(&mut *reader, 4096)
        .read_to_end(&mut head)
        .map_err(read_err)?;
    let compression = sniff(&head);
    let looks_json = matches!(head.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
    let mut json = (keep && looks_json).then(Vec::new);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = head;
    while !buf.is_empty() {
        if let Err(source) = temp.file.write_all(&buf) {
            return Err(ArchiveError::Io {
                op: "write",
                path: temp.path().to_owned(),
                source,
            });
        }
        hasher.update(&buf);
        if let Some(j) = json.as_mut() {
            j.extend_from_slice(&buf);
        }
        size += buf.len() as u64;
        buf.resize(CHUNK, 0);
        let n = read_some(reader, &mut buf).map_err(read_err)?;
        buf.truncate(n);
    }
    let digest = Digest::from_hasher(hasher);
    Ok((
        Staged {
            temp,
            digest,
            size,
            compression,
            diff_id: Default::default(),
        },
        json,
    ))
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
