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
    let flattened = flatten_layers(layers, &file, limits)?;
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
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(ChainLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(io_error("locking", path)(err));
            }
        }
    }
}
