//! Tar streams of container files, shared by the host and the agent.
//!
//! `hull cp`, `diff`, `export` and `commit` move files between the guest and the host
//! as tar streams. Packing runs where the files are; unpacking runs where they go and
//! treats the stream as hostile (see [`unpack`]): every name is resolved beneath the
//! destination's open directory, never through a symlink, hard links only to files
//! the stream made, and on the host no device nodes, fifos, setuid, setgid or
//! world-writable modes, with the stream's size bounded.
//!
//! The overlayfs writable layer is packed as an OCI layer: a whiteout (a 0/0 character
//! device) becomes a `.wh.<name>` entry, an opaque directory gets `.wh..wh..opq`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header, HeaderMode};

mod beneath;
mod unpack;

pub use unpack::{confine, place, unpack, Modes, Placement, Specials, UnpackOptions, Unpacked, HOST_MAX_ENTRIES};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {name:?}: {reason}")]
    Entry { name: String, reason: String },
    #[error("malformed tar stream: {0}")]
    Malformed(#[source] io::Error),
    #[error("{0}")]
    Placement(String),
    #[error("the stream exceeds its limit of {0} bytes")]
    Limit(u64),
    #[error("the stream has more than {0} entries")]
    TooManyEntries(u64),
}

pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Paths the runtime itself writes or mounts in every container (`/etc/hosts`, the
/// kernel file systems): Docker keeps them out of `diff`, `commit` and so does hull.
pub const RUNTIME_PATHS: &[&str] = &["etc/hostname", "etc/hosts", "etc/resolv.conf", "dev", "proc", "sys"];

fn is_runtime_path(rel: &Path) -> bool {
    RUNTIME_PATHS.iter().any(|p| rel == Path::new(p))
}

/// Writes tar entries for a tree, one file system only, hard links kept.
struct Packer<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Convert overlayfs whiteouts and opaque directories to OCI form.
    layer: bool,
}

impl<W: Write> Packer<W> {
    fn new(out: W, layer: bool) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(HeaderMode::Complete);
        Packer {
            builder,
            links: HashMap::new(),
            layer,
        }
    }

    /// Packs `src` under archive name `name` (its children only when `name` is
    /// empty). Directories on other file systems (mount points) are packed empty.
    fn tree(&mut self, src: &Path, name: &Path, skip: impl Fn(&Path) -> bool) -> Result<()> {
        let meta = fs::symlink_metadata(src).map_err(io_at(src))?;
        let dev = meta.dev();
        if !name.as_os_str().is_empty() {
            self.entry(src, name, &meta)?;
        }
        if !meta.is_dir() {
            return Ok(());
        }
        let mut stack = vec![(src.to_owned(), name.to_owned(), PathBuf::new())];
        while let Some((dir, dir_name, rel)) = stack.pop() {
            let children = sorted_names(&dir)?;
            // Reversed onto the stack: packed in name order, parents first.
            let mut subdirs = Vec::new();
            for child in children {
                let (path, child_name, child_rel) = (dir.join(&child), dir_name.join(&child), rel.join(&child));
                if skip(&child_rel) {
                    continue;
                }
                let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
                self.entry(&path, &child_name, &meta)?;
                if meta.is_dir() && meta.dev() == dev {
                    subdirs.push((path, child_name, child_rel));
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<()> {
        let kind = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        header.set_size(0);
        let err = io_at(path);
        if self.layer && kind.is_char_device() && meta.rdev() == 0 {
            return self.whiteout(path, name, meta);
        }
        if kind.is_dir() {
            header.set_entry_type(EntryType::Directory);
            self.builder.append_data(&mut header, name, io::empty()).map_err(err)?;
            if self.layer && is_opaque(path) {
                let mut wh = Header::new_gnu();
                wh.set_metadata_in_mode(meta, HeaderMode::Complete);
                wh.set_entry_type(EntryType::Regular);
                wh.set_size(0);
                let wh_name = name.join(".wh..wh..opq");
                self.builder
                    .append_data(&mut wh, wh_name, io::empty())
                    .map_err(io_at(path))?;
            }
        } else if kind.is_symlink() {
            let target = fs::read_link(path).map_err(io_at(path))?;
            header.set_entry_type(EntryType::Symlink);
            self.builder.append_link(&mut header, name, target).map_err(err)?;
        } else if kind.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                    header.set_entry_type(EntryType::Link);
                    let first = first.clone();
                    return self.builder.append_link(&mut header, name, first).map_err(err);
                }
                self.links.insert((meta.dev(), meta.ino()), name.to_owned());
            }
            let file = fs::File::open(path).map_err(io_at(path))?;
            header.set_entry_type(EntryType::Regular);
            header.set_size(meta.len());
            // A file that shrank while packed would corrupt the stream: read exactly.
            let data = Exact {
                inner: file,
                left: meta.len(),
            };
            self.builder.append_data(&mut header, name, data).map_err(err)?;
        } else if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() {
            // The header already carries the type and device numbers.
            self.builder.append_data(&mut header, name, io::empty()).map_err(err)?;
        }
        // Sockets are not archived (tar has no type for them).
        Ok(())
    }

    fn whiteout(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<()> {
        let file = name.file_name().unwrap_or_default();
        let mut wh_name = OsStr::new(".wh.").to_owned();
        wh_name.push(file);
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        header.set_entry_type(EntryType::Regular);
        header.set_size(0);
        header.set_device_major(0).ok();
        header.set_device_minor(0).ok();
        let full = name.parent().unwrap_or(Path::new("")).join(wh_name);
        self.builder
            .append_data(&mut header, full, io::empty())
            .map_err(io_at(path))
    }

    fn finish(self) -> Result<W> {
        self.builder.into_inner().map_err(|source| ArchiveError::Io {
            path: "tar stream".into(),
            source,
        })
    }
}

/// The names in `dir`, sorted (streams and listings come out in a stable order).
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names = fs::read_dir(dir)
        .map_err(io_at(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(io_at(dir))?;
    names.sort();
    Ok(names)
}

/// Reads exactly `left` bytes, padding with zeros when the file shrank.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    let name = c"trusted.overlay.opaque";
    // SAFETY: valid NUL-terminated strings and a buffer of the length passed.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    n == 1 && value[0] == b'y'
}

/// Packs `src` as a tar stream whose entries start with `name`, or, with `name`
/// empty, holds `src`'s children (`docker cp SRC/. DEST`). Returns the writer.
pub fn pack_path<W: Write>(out: W, src: &Path, name: &str) -> Result<W> {
    let mut packer = Packer::new(out, false);
    packer.tree(src, Path::new(name), |_| false)?;
    packer.finish()
}

/// Packs the overlayfs upper directory `upper` as an OCI layer tar.
pub fn pack_layer<W: Write>(out: W, upper: &Path) -> Result<W> {
    let mut packer = Packer::new(out, true);
    packer.tree(upper, Path::new(""), is_runtime_path)?;
    packer.finish()
}

/// One line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `A`, `C` or `D`.
    pub kind: char,
    /// Absolute path inside the container.
    pub path: String,
}

/// The changes of the writable layer `upper` over the image's tree `lower`, sorted
/// by path as Docker prints them. A directory of the image counts as changed when
/// something below it changed or its owner or mode did.
pub fn changes(upper: &Path, lower: &Path) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    changes_in(upper, lower, Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Appends the changes below `rel`; returns whether there were any.
fn changes_in(upper: &Path, lower: &Path, rel: &Path, out: &mut Vec<Change>) -> Result<bool> {
    let names = sorted_names(&upper.join(rel))?;
    let mut any = false;
    for name in names {
        let child = rel.join(&name);
        if is_runtime_path(&child) {
            continue;
        }
        let path = upper.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        let shown = format!("/{}", child.display());
        let was = fs::symlink_metadata(lower.join(&child)).ok();
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(Change { kind: 'D', path: shown });
            any = true;
            continue;
        }
        match was {
            None => {
                out.push(Change { kind: 'A', path: shown });
                if meta.is_dir() {
                    changes_in(upper, lower, &child, out)?;
                }
            }
            Some(was) if meta.is_dir() && was.is_dir() => {
                let at = out.len();
                let below = changes_in(upper, lower, &child, out)?;
                let own = (meta.mode(), meta.uid(), meta.gid()) != (was.mode(), was.uid(), was.gid());
                if !below && !own && !is_opaque(&path) {
                    continue;
                }
                out.insert(at, Change { kind: 'C', path: shown });
            }
            Some(_) => {
                out.push(Change { kind: 'C', path: shown });
                if meta.is_dir() {
                    changes_in(upper, lower, &child, out)?;
                }
            }
        }
        any = true;
    }
    Ok(any)
}

#[cfg(test)]
mod tests;
