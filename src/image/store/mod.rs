//! The image store: an OCI image layout under `$HULL_ROOT` (default
//! `$XDG_DATA_HOME/hull`), readable by `skopeo inspect oci:$HULL_ROOT:REF`.
//!
//! ```text
//! oci-layout, index.json     the layout; each tag is an index entry whose
//!                            org.opencontainers.image.ref.name is the full reference
//! blobs/sha256/<hex>         content, published by rename after fsync
//! tmp/                       in-progress writes, each locked by its writer
//! locks/                     flock files: index, gc, one per blob
//! ```
//!
//! Blob writers hold `locks/blob-<hex>.lock`, so concurrent pulls fetch a blob once.
//! Pulls and loads hold `locks/gc.lock` shared; garbage collection takes it exclusive.

mod blob;
pub mod fs;
mod index;

use std::io;
use std::path::{Path, PathBuf};

pub use blob::BlobWriter;
pub use index::ImageRecord;

use super::digest::Digest;
use super::manifest::{self, Blob, Document, Manifest, ManifestError};
use super::reference::Reference;
use fs::{Lock, OwnershipError};

/// Annotation carrying an image's tag (OCI image layout convention).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation carrying the digest the image was pulled by (manifest or index).
pub const REPO_DIGEST: &str = "io.hull.image.repo-digest";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} is missing from the store")]
    MissingBlob { digest: Digest },
    #[error("blob {digest} is {size} bytes, more than the {limit}-byte limit")]
    BlobTooLarge { digest: Digest, size: u64, limit: u64 },
    #[error("content does not match digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("content of {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch { digest: Digest, expected: u64, actual: u64 },
    #[error("store index {path} is corrupt: {reason}")]
    CorruptIndex { path: PathBuf, reason: String },
    #[error("manifest {digest}")]
    Manifest {
        digest: Digest,
        #[source]
        source: ManifestError,
    },
    #[error("manifest {digest} is an index; the store holds single-platform images only")]
    NotAnImage { digest: Digest },
    #[error("config {digest} is not valid JSON")]
    Config {
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("image id {0} is ambiguous: it matches several images")]
    AmbiguousId(String),
    #[error("no blob removed: manifest {digest} cannot be read, so what it references is unknown")]
    GcUnsure {
        digest: Digest,
        #[source]
        source: Box<StoreError>,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// An image in the store with its manifest and config read.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    /// The config blob as JSON, kept whole so no field is lost.
    pub config: serde_json::Value,
    pub tags: Vec<Reference>,
    pub repo_digests: Vec<String>,
}

impl Image {
    /// Total size of the image's blobs (config and compressed layers).
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.blob.size).sum::<u64>()
    }

    /// The `created` time of the config, if any.
    pub fn created(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.config.get("created")?.as_str()?.parse().ok()
    }

    /// The diff ids of the rootfs, in layer order.
    pub fn diff_ids(&self) -> Vec<String> {
        self.config
            .pointer("/rootfs/diff_ids")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// The on-disk store.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// `$HULL_ROOT`, else `$XDG_DATA_HOME/hull`, else `~/.local/share/hull`.
    pub fn default_root() -> PathBuf {
        if let Some(root) = std::env::var_os("HULL_ROOT").filter(|v| !v.is_empty()) {
            return PathBuf::from(root);
        }
        if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(data).join("hull");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local/share/hull")
    }

    /// Opens (creating if needed) the store at `root`, refusing directories that another
    /// user owns or could write. Removes temp files left by crashed writers.
    pub fn open(root: impl Into<PathBuf>) -> Result<ImageStore> {
        let root = root.into();
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let store = ImageStore { root };
        for dir in ["", "blobs", "blobs/sha256", "tmp", "locks"] {
            fs::ensure_private_dir(&store.root.join(dir))?;
        }
        store.ensure_layout_files()?;
        fs::remove_stale_temps(&store.tmp_dir()).map_err(io_err("clean", &store.tmp_dir()))?;
        Ok(store)
    }

    fn ensure_layout_files(&self) -> Result<()> {
        let layout = self.root.join("oci-layout");
        if !layout.exists() {
            fs::write_atomic(&self.tmp_dir(), &layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(io_err("write", &layout))?;
        }
        let _lock = self.lock_index()?;
        if !self.index_path().exists() {
            index::write(self, &[])?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }
    fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(name)
    }

    /// Where a blob lives once published.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Exclusive lock on one blob: whoever holds it is the one writing that blob.
    pub fn lock_blob(&self, digest: &Digest) -> Result<Lock> {
        let path = self.lock_path(&format!("blob-{}.lock", digest.hex()));
        Lock::exclusive(&path).map_err(io_err("lock", &path))
    }

    /// Held (shared) by every pull and load so garbage collection waits for them.
    pub fn pin(&self) -> Result<Lock> {
        let path = self.lock_path("gc.lock");
        Lock::shared(&path).map_err(io_err("lock", &path))
    }

    fn lock_index(&self) -> Result<Lock> {
        let path = self.lock_path("index.lock");
        Lock::exclusive(&path).map_err(io_err("lock", &path))
    }

    /// Starts writing a new blob into `tmp/`.
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::create(self)
    }

    /// Stores small content (a manifest, a config) and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let _lock = self.lock_blob(&digest)?;
        if !self.has_blob(&digest) {
            let dest = self.blob_path(&digest);
            fs::write_atomic(&self.tmp_dir(), &dest, bytes).map_err(io_err("write", &dest))?;
        }
        Ok(digest)
    }

    /// Reads a whole small blob, refusing more than `limit` bytes and checking its digest.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::MissingBlob { digest: digest.clone() })
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        if size > limit {
            return Err(StoreError::BlobTooLarge {
                digest: digest.clone(),
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        io::Read::read_to_end(&mut io::Read::take(file, limit), &mut bytes).map_err(io_err("read", &path))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Reads and parses an image manifest blob.
    pub fn read_manifest(&self, digest: &Digest) -> Result<Manifest> {
        let bytes = self.read_blob(digest, manifest::MAX_MANIFEST_BYTES)?;
        match manifest::parse(&bytes, None) {
            Ok(Document::Manifest(m)) => Ok(m),
            Ok(Document::Index { .. }) => Err(StoreError::NotAnImage { digest: digest.clone() }),
            Err(source) => Err(StoreError::Manifest {
                digest: digest.clone(),
                source,
            }),
        }
    }

    /// All tagged and dangling images, as recorded in index.json.
    pub fn records(&self) -> Result<Vec<ImageRecord>> {
        index::read(self)
    }

    /// Points `reference` at `manifest`, replacing what it named before. An image
    /// that loses its last tag stays, untagged (dangling), until pruned.
    pub fn tag(&self, reference: &Reference, manifest: &Blob, repo_digest: Option<&Digest>) -> Result<()> {
        let _lock = self.lock_index()?;
        let mut records = index::read(self)?;
        let name = reference.to_string();
        let mut orphaned = None;
        if let Some(pos) = records.iter().position(|r| r.name.as_deref() == Some(name.as_str())) {
            let old = records.remove(pos);
            if old.manifest.digest != manifest.digest {
                orphaned = Some(old);
            }
        }
        records.retain(|r| !(r.name.is_none() && r.manifest.digest == manifest.digest));
        let repo_digest = repo_digest.cloned().or_else(|| {
            records
                .iter()
                .find(|r| r.manifest.digest == manifest.digest)
                .and_then(|r| r.repo_digest.clone())
        });
        records.push(ImageRecord {
            name: Some(name),
            manifest: manifest.clone(),
            repo_digest,
        });
        if let Some(mut old) = orphaned {
            if !records.iter().any(|r| r.manifest.digest == old.manifest.digest) {
                old.name = None;
                records.push(old);
            }
        }
        index::write(self, &records)
    }

    /// Records `manifest` as an untagged (dangling) image, unless an entry names it.
    pub fn add_untagged(&self, manifest: &Blob) -> Result<()> {
        let _lock = self.lock_index()?;
        let mut records = index::read(self)?;
        if records.iter().any(|r| r.manifest.digest == manifest.digest) {
            return Ok(());
        }
        records.push(ImageRecord {
            name: None,
            manifest: manifest.clone(),
            repo_digest: None,
        });
        index::write(self, &records)
    }

    /// Removes the records `remove` selects; returns them. An image that loses its
    /// last record while `in_use` accepts its manifest digest stays, untagged
    /// (dangling), so a container keeps its image (and its blobs) after `rmi -f`.
    pub fn remove_records(
        &self,
        remove: impl FnMut(&ImageRecord) -> bool,
        in_use: impl Fn(&Digest) -> bool,
    ) -> Result<Vec<ImageRecord>> {
        let _lock = self.lock_index()?;
        let records = index::read(self)?;
        let (gone, mut kept): (Vec<_>, Vec<_>) = records.into_iter().partition(remove);
        for old in &gone {
            let named = kept.iter().any(|r| r.manifest.digest == old.manifest.digest);
            if !named && in_use(&old.manifest.digest) {
                kept.push(ImageRecord {
                    name: None,
                    ..old.clone()
                });
            }
        }
        if !gone.is_empty() {
            index::write(self, &kept)?;
        }
        Ok(gone)
    }

    /// Reads an image: manifest, config, and every tag that names it.
    pub fn image(&self, manifest_digest: &Digest) -> Result<Image> {
        let manifest = self.read_manifest(manifest_digest)?;
        let config_digest = manifest.config.digest.clone();
        let bytes = self.read_blob(&config_digest, manifest::MAX_CONFIG_BYTES)?;
        let config = serde_json::from_slice(&bytes).map_err(|source| StoreError::Config {
            digest: config_digest.clone(),
            source,
        })?;
        let records: Vec<_> = self
            .records()?
            .into_iter()
            .filter(|r| &r.manifest.digest == manifest_digest)
            .collect();
        let tags = records.iter().filter_map(|r| r.reference()).collect::<Vec<_>>();
        let mut repo_digests: Vec<String> = records
            .iter()
            .filter_map(|r| {
                Some(format!(
                    "{}@{}",
                    r.reference()?.familiar_name(),
                    r.repo_digest.as_ref()?
                ))
            })
            .collect();
        repo_digests.dedup();
        Ok(Image {
            manifest_digest: manifest_digest.clone(),
            manifest,
            config_digest,
            config,
            tags,
            repo_digests,
        })
    }

    /// Finds images by reference (`alpine`, `alpine:3`, `name@sha256:...`) or by image
    /// id (config digest, full or a prefix of at least 4 hex characters).
    pub fn find(&self, query: &str) -> Result<Image> {
        let records = self.records()?;
        if let Ok(reference) = Reference::parse(query) {
            let name = reference.to_string();
            if let Some(r) = records.iter().find(|r| r.name.as_deref() == Some(name.as_str())) {
                return self.image(&r.manifest.digest);
            }
            if let Some(d) = reference.digest() {
                if let Some(r) = records.iter().find(|r| {
                    r.reference().is_some_and(|x| x.name() == reference.name())
                        && (&r.manifest.digest == d || r.repo_digest.as_ref() == Some(d))
                }) {
                    return self.image(&r.manifest.digest);
                }
            }
        }
        self.find_by_id(&records, query)
    }

    fn find_by_id(&self, records: &[ImageRecord], query: &str) -> Result<Image> {
        let prefix = query.strip_prefix("sha256:").unwrap_or(query);
        let is_hex = prefix.len() >= 4 && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_hex {
            return Err(StoreError::NoSuchImage(query.to_owned()));
        }
        let mut found: Option<Image> = None;
        let mut seen = std::collections::HashSet::new();
        for r in records {
            if !seen.insert(r.manifest.digest.clone()) {
                continue;
            }
            let image = self.image(&r.manifest.digest)?;
            if image.config_digest.hex().starts_with(prefix) {
                match &found {
                    Some(f) if f.config_digest != image.config_digest => {
                        return Err(StoreError::AmbiguousId(query.to_owned()))
                    }
                    _ => found = Some(image),
                }
            }
        }
        found.ok_or_else(|| StoreError::NoSuchImage(query.to_owned()))
    }

    /// Takes the garbage collector's lock: waits for in-flight pulls, loads, commits,
    /// imports and creates (which hold it shared, see [`ImageStore::pin`]) and keeps
    /// new ones out until dropped.
    pub fn lock_gc(&self) -> Result<GcLock> {
        let path = self.lock_path("gc.lock");
        Ok(GcLock {
            _lock: Lock::exclusive(&path).map_err(io_err("lock", &path))?,
        })
    }

    /// The blobs of the image whose manifest is `digest`: manifest, config, layers.
    pub fn image_blobs(&self, digest: &Digest) -> Result<Vec<Digest>> {
        let manifest = self.read_manifest(digest)?;
        let mut blobs = vec![digest.clone(), manifest.config.digest];
        blobs.extend(manifest.layers.into_iter().map(|l| l.blob.digest));
        Ok(blobs)
    }

    /// Deletes every blob that neither an index entry nor one of `roots` (manifest
    /// digests of images containers use) references; returns (count, bytes) freed.
    /// When a manifest among them cannot be read, what it references is unknown and
    /// nothing is deleted ([`StoreError::GcUnsure`]).
    pub fn collect_garbage(&self, _gc: &GcLock, roots: &[Digest]) -> Result<(usize, u64)> {
        let _index = self.lock_index()?;
        let mut live = std::collections::HashSet::new();
        let manifests = index::read(self)?.into_iter().map(|r| r.manifest.digest);
        for digest in manifests.chain(roots.iter().cloned()) {
            let blobs = self.image_blobs(&digest).map_err(|source| StoreError::GcUnsure {
                digest: digest.clone(),
                source: Box::new(source),
            })?;
            live.extend(blobs);
        }
        let dir = self.root.join("blobs/sha256");
        let (mut count, mut bytes) = (0, 0);
        for entry in std::fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name();
            let Ok(digest) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else {
                continue;
            };
            if live.contains(&digest) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(entry.path()).map_err(io_err("remove", &entry.path()))?;
            count += 1;
            bytes += size;
        }
        fs::sync_dir(&dir).map_err(io_err("sync", &dir))?;
        Ok((count, bytes))
    }
}

/// The garbage collector's exclusive lock on the store, held until dropped.
#[derive(Debug)]
pub struct GcLock {
    _lock: Lock,
}
