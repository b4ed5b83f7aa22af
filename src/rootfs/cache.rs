//! The cache of flattened images: `<dir>/<chain-id hex>.erofs`.
//!
//! One build per chain id, however many callers ask at once: builders take an
//! exclusive `flock` on `<hex>.lock`, look again for the image, and only then build
//! into `<hex>.erofs.tmp`, which is fsynced, renamed to its final name and followed
//! by an fsync of the directory. A reader only ever sees a complete image.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::error::FlattenError;
use super::flatten::flatten_layers;
use super::layer::{chain_id, LayerInput};
use super::Limits;

/// A flattened image ready to attach read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRootfs {
    pub path: PathBuf,
    pub size: u64,
    /// `sha256:<hex>` chain id of the layers' diff ids.
    pub chain_id: String,
}

/// A finished disk in the cache (or a leftover of a killed build, `leftover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedDisk {
    pub path: PathBuf,
    /// `sha256:<hex>`, from the file name.
    pub chain_id: String,
    /// Bytes allocated on disk (`st_blocks * 512`).
    pub allocated: u64,
    /// A `.erofs.tmp` file whose builder is gone.
    pub leftover: bool,
}

/// Flattened images keyed by chain id.
#[derive(Debug, Clone)]
pub struct RootfsCache {
    dir: PathBuf,
    limits: Limits,
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FlattenError + 'a {
    move |source| FlattenError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl RootfsCache {
    /// A cache in `dir` (usually `<store>/rootfs`), created on first use.
    pub fn new(dir: PathBuf, limits: Limits) -> Self {
        RootfsCache { dir, limits }
    }

    /// Where the image of `chain_id` lives once built.
    pub fn image_path(&self, chain_id: &str) -> PathBuf {
        self.dir.join(format!("{}.erofs", chain_hex(chain_id)))
    }

    /// Returns the image of `layers`, building it unless it is already there.
    pub fn ensure(&self, layers: &[LayerInput]) -> Result<BuiltRootfs, FlattenError> {
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
        let chain = chain_id(&diff_ids).ok_or(FlattenError::NoLayers)?;
        let path = self.image_path(&chain);
        if let Some(built) = existing(&path, &chain)? {
            return Ok(built);
        }
        self.prepare_dir()?;
        let _lock = ChainLock::acquire(&self.dir.join(format!("{}.lock", chain_hex(&chain))))?;
        if let Some(built) = existing(&path, &chain)? {
            return Ok(built);
        }
        let size = build_to(layers, &path, &self.limits)?;
        Ok(BuiltRootfs {
            path,
            size,
            chain_id: chain,
        })
    }

    /// Every finished disk in the cache (none when the cache was never used).
    pub fn disks(&self) -> Result<Vec<CachedDisk>, FlattenError> {
        Ok(self.entries()?.into_iter().filter(|d| !d.leftover).collect())
    }

    /// Removes every finished disk `keep` rejects, and what builds killed half-way
    /// left (`<hex>.erofs.tmp`). Each goes only under its chain's build lock, taken
    /// without waiting: a disk being built right now, or its temporary file, is
    /// skipped. Lock files stay (removing one could let two builders in at once).
    /// Returns what was removed.
    pub fn remove_unused(&self, keep: impl Fn(&CachedDisk) -> bool) -> Result<Vec<CachedDisk>, FlattenError> {
        let mut removed = Vec::new();
        for disk in self.entries()? {
            if !disk.leftover && keep(&disk) {
                continue;
            }
            let lock_path = self.dir.join(format!("{}.lock", chain_hex(&disk.chain_id)));
            let Some(_lock) = ChainLock::try_acquire(&lock_path)? else {
                continue;
            };
            match fs::remove_file(&disk.path) {
                Ok(()) => removed.push(disk),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("removing", &disk.path)(e)),
            }
        }
        if !removed.is_empty() {
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error("syncing", &self.dir))?;
        }
        Ok(removed)
    }

    /// Disks and leftovers, by their names: `<64 hex>.erofs` and `<64 hex>.erofs.tmp`.
    /// Anything else (lock files, foreign names, non-files) is not the cache's.
    fn entries(&self) -> Result<Vec<CachedDisk>, FlattenError> {
        let dir = match fs::read_dir(&self.dir) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &self.dir)(e)),
        };
        let mut disks = Vec::new();
        for entry in dir {
            let entry = entry.map_err(io_error("reading", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let (hex, leftover) = match name.strip_suffix(".erofs.tmp") {
                Some(hex) => (hex, true),
                None => match name.strip_suffix(".erofs") {
                    Some(hex) => (hex, false),
                    None => continue,
                },
            };
            let is_hex = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if !is_hex || !meta.is_file() {
                continue;
            }
            disks.push(CachedDisk {
                path: entry.path(),
                chain_id: format!("sha256:{hex}"),
                allocated: meta.blocks() * 512,
                leftover,
            });
        }
        disks.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(disks)
    }

    /// Creates the cache directory, refusing one that is a symlink or not ours.
    fn prepare_dir(&self) -> Result<(), FlattenError> {
        match fs::DirBuilder::new().mode(0o700).recursive(true).create(&self.dir) {
            Ok(()) => {}
            Err(e) => return Err(io_error("creating", &self.dir)(e)),
        }
        let meta = fs::symlink_metadata(&self.dir).map_err(io_error("inspecting", &self.dir))?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if !meta.is_dir() || meta.uid() != euid {
            return Err(FlattenError::UnsafeCacheDir { path: self.dir.clone() });
        }
        Ok(())
    }
}

use std::os::unix::fs::DirBuilderExt;

/// The hex part of `sha256:<hex>`, or the whole id if it has no algorithm.
fn chain_hex(chain_id: &str) -> &str {
    chain_id.split_once(':').map_or(chain_id, |(_, hex)| hex)
}

/// The finished image at `path`, if there is one.
fn existing(path: &Path, chain: &str) -> Result<Option<BuiltRootfs>, FlattenError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Some(BuiltRootfs {
            path: path.to_owned(),
            size: meta.len(),
            chain_id: chain.to_owned(),
        })),
        Ok(_) => Err(FlattenError::UnsafeCacheDir { path: path.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("inspecting", path)(e)),
    }
}

/// Builds the image of `layers` at `path` through a temporary file next to it;
/// returns the image's size. On any failure the temporary file is removed and
/// nothing appears at `path`.
pub fn build_to(layers: &[LayerInput], path: &Path, limits: &Limits) -> Result<u64, FlattenError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let result = build_tmp(layers, &tmp, path, limits);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn build_tmp(layers: &[LayerInput], tmp: &Path, path: &Path, limits: &Limits) -> Result<u64, FlattenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .map_err(io_error("creating", tmp))?;
    let flattened = flatten_layers(layers, &file, limits).map_err(|e| e.writing_to(path))?;
    file.sync_all().map_err(io_error("syncing", tmp))?;
    fs::rename(tmp, path).map_err(io_error("renaming", tmp))?;
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing", parent))?;
    Ok(flattened.info.size)
}

/// An exclusive `flock` on a per-chain lock file, released on drop.
struct ChainLock {
    _file: File,
}

impl ChainLock {
    fn acquire(path: &Path) -> Result<Self, FlattenError> {
        Self::lock(path, libc::LOCK_EX)?.ok_or_else(|| io_error("locking", path)(io::ErrorKind::WouldBlock.into()))
    }

    /// The lock if nobody holds it, else `None` (a build is under way).
    fn try_acquire(path: &Path) -> Result<Option<Self>, FlattenError> {
        Self::lock(path, libc::LOCK_EX | libc::LOCK_NB)
    }

    fn lock(path: &Path, op: libc::c_int) -> Result<Option<Self>, FlattenError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_error("opening lock", path))?;
        loop {
            // SAFETY: the descriptor is open and owned by `file` for the whole call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(ChainLock { _file: file }));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(io_error("locking", path)(err)),
            }
        }
    }
}
