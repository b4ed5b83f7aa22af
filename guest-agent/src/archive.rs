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
//! device) becomes a `.wh.<name>` entry, an opaque directory gets `.wh..wh..opq`. A
//! directory renamed from the image (overlayfs `redirect_dir`: an upper directory whose
//! `redirect` mark names its origin) has no OCI form, so it is packed whole from the
//! merged tree, as an opaque directory; its old name is a whiteout already.

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

/// An overlayfs mount as the agent sees it: the writable layer's upper directory, the
/// image's tree below it, the merged tree, and the xattr namespace overlayfs keeps its
/// marks in (`trusted.overlay.`, or `user.overlay.` with the `userxattr` option).
#[derive(Debug, Clone, Copy)]
pub struct Overlay<'a> {
    pub upper: &'a Path,
    pub lower: &'a Path,
    pub merged: &'a Path,
    pub xattrs: &'a str,
}

impl Overlay<'_> {
    /// The xattr namespace of an overlay mounted without `userxattr`.
    pub const TRUSTED: &'static str = "trusted.overlay.";

    /// Whether the upper directory `dir` is opaque (hides the image's directory).
    fn is_opaque(&self, dir: &Path) -> bool {
        let mut value = [0u8; 4];
        matches!(get_xattr(dir, &format!("{}opaque", self.xattrs), &mut value), Some(1) if value[0] == b'y')
    }

    /// Whether the upper directory `dir` was renamed from elsewhere (`redirect_dir`).
    fn is_redirect(&self, dir: &Path) -> bool {
        let mut value = [0u8; 1];
        // A redirect holds a path; ERANGE (a value longer than the buffer) is one too.
        get_xattr(dir, &format!("{}redirect", self.xattrs), &mut value).is_some()
    }
}

/// The size of xattr `name` of `path` (not followed if a symlink) read into `value`,
/// or `None` when it is absent or unreadable; a value too long for `value` counts as
/// present.
fn get_xattr(path: &Path, name: &str, value: &mut [u8]) -> Option<usize> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: valid NUL-terminated strings and a buffer of the length passed.
    let n = unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    match n {
        n if n >= 0 => Some(n as usize),
        _ if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) => Some(value.len()),
        _ => None,
    }
}

/// Writes tar entries for a tree, one file system only, hard links kept.
struct Packer<'a, W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Convert overlayfs whiteouts, opaque and renamed directories to OCI form.
    layer: Option<Overlay<'a>>,
}

impl<'a, W: Write> Packer<'a, W> {
    fn new(out: W, layer: Option<Overlay<'a>>) -> Self {
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
    /// `rel` is `src`'s path in the container, for `skip` and renamed directories.
    fn tree(&mut self, src: &Path, name: &Path, rel: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
        let meta = fs::symlink_metadata(src).map_err(io_at(src))?;
        if !name.as_os_str().is_empty() {
            self.entry(src, name, &meta)?;
        }
        if meta.is_dir() {
            self.children(src, name, rel, meta.dev(), skip)?;
        }
        Ok(())
    }

    /// Packs everything below the directory `src` on file system `dev`, in name
    /// order, parents first.
    fn children(&mut self, src: &Path, name: &Path, rel: &Path, dev: u64, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
        let mut stack = vec![(src.to_owned(), name.to_owned(), rel.to_owned())];
        while let Some((dir, dir_name, rel)) = stack.pop() {
            let mut subdirs = Vec::new();
            for child in sorted_names(&dir)? {
                let (path, child_name, child_rel) = (dir.join(&child), dir_name.join(&child), rel.join(&child));
                if skip(&child_rel) {
                    continue;
                }
                let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
                if meta.is_dir() && self.renamed(&path, &child_name, &child_rel, skip)? {
                    continue;
                }
                self.entry(&path, &child_name, &meta)?;
                if meta.is_dir() && meta.dev() == dev {
                    subdirs.push((path, child_name, child_rel));
                }
            }
            // Reversed onto the stack: packed in name order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// Packs an upper directory renamed from the image (`redirect_dir`) whole, from
    /// the merged tree, marked opaque. Returns false for any other directory.
    fn renamed(&mut self, path: &Path, name: &Path, rel: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<bool> {
        let Some(overlay) = self.layer.filter(|o| o.is_redirect(path)) else {
            return Ok(false);
        };
        let merged = overlay.merged.join(rel);
        let meta = fs::symlink_metadata(&merged).map_err(io_at(&merged))?;
        self.directory(&merged, name, &meta, true)?;
        // The merged tree has no overlayfs marks: below it everything is a plain file.
        self.layer = None;
        let packed = self.children(&merged, name, rel, meta.dev(), skip);
        self.layer = Some(overlay);
        packed.map(|()| true)
    }

    /// A directory entry, followed by the OCI opaque marker when `opaque`.
    fn directory(&mut self, path: &Path, name: &Path, meta: &Metadata, opaque: bool) -> Result<()> {
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        header.set_size(0);
        header.set_entry_type(EntryType::Directory);
        self.builder
            .append_data(&mut header, name, io::empty())
            .map_err(io_at(path))?;
        if opaque {
            let mut wh = Header::new_gnu();
            wh.set_metadata_in_mode(meta, HeaderMode::Complete);
            wh.set_entry_type(EntryType::Regular);
            wh.set_size(0);
            self.builder
                .append_data(&mut wh, name.join(".wh..wh..opq"), io::empty())
                .map_err(io_at(path))?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, name: &Path, meta: &Metadata) -> Result<()> {
        let kind = meta.file_type();
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(meta, HeaderMode::Complete);
        header.set_size(0);
        let err = io_at(path);
        if self.layer.is_some() && kind.is_char_device() && meta.rdev() == 0 {
            return self.whiteout(path, name, meta);
        }
        if kind.is_dir() {
            let opaque = self.layer.is_some_and(|o| o.is_opaque(path));
            self.directory(path, name, meta, opaque)?;
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

/// Packs `src` as a tar stream whose entries start with `name`, or, with `name`
/// empty, holds `src`'s children (`docker cp SRC/. DEST`). Returns the writer.
pub fn pack_path<W: Write>(out: W, src: &Path, name: &str) -> Result<W> {
    let mut packer = Packer::new(out, None);
    packer.tree(src, Path::new(name), Path::new(""), &|_| false)?;
    packer.finish()
}

/// Packs the overlay's writable layer as an OCI layer tar.
pub fn pack_layer<W: Write>(out: W, overlay: &Overlay) -> Result<W> {
    let mut packer = Packer::new(out, Some(*overlay));
    packer.tree(overlay.upper, Path::new(""), Path::new(""), &is_runtime_path)?;
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

/// The changes of the overlay's writable layer over the image's tree, sorted by path
/// as Docker prints them. A directory of the image counts as changed when something
/// below it changed or its owner or mode did. Everything in a directory renamed from
/// the image (`redirect_dir`) is listed as added, as Docker lists a renamed directory.
pub fn changes(overlay: &Overlay) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    changes_in(overlay, Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Appends the changes below `rel`; returns whether there were any.
fn changes_in(overlay: &Overlay, rel: &Path, out: &mut Vec<Change>) -> Result<bool> {
    let names = sorted_names(&overlay.upper.join(rel))?;
    let mut any = false;
    for name in names {
        let child = rel.join(&name);
        if is_runtime_path(&child) {
            continue;
        }
        let path = overlay.upper.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        let shown = format!("/{}", child.display());
        let was = fs::symlink_metadata(overlay.lower.join(&child)).ok();
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            out.push(Change { kind: 'D', path: shown });
            any = true;
            continue;
        }
        if meta.is_dir() && overlay.is_redirect(&path) {
            let kind = if was.is_some() { 'C' } else { 'A' };
            out.push(Change { kind, path: shown });
            let merged = overlay.merged.join(&child);
            let dev = fs::symlink_metadata(&merged).map_err(io_at(&merged))?.dev();
            all_added(overlay.merged, &child, dev, out)?;
            any = true;
            continue;
        }
        match was {
            None => {
                out.push(Change { kind: 'A', path: shown });
                if meta.is_dir() {
                    changes_in(overlay, &child, out)?;
                }
            }
            Some(was) if meta.is_dir() && was.is_dir() => {
                let at = out.len();
                let below = changes_in(overlay, &child, out)?;
                let own = (meta.mode(), meta.uid(), meta.gid()) != (was.mode(), was.uid(), was.gid());
                if !below && !own && !overlay.is_opaque(&path) {
                    continue;
                }
                out.insert(at, Change { kind: 'C', path: shown });
            }
            Some(_) => {
                out.push(Change { kind: 'C', path: shown });
                if meta.is_dir() {
                    changes_in(overlay, &child, out)?;
                }
            }
        }
        any = true;
    }
    Ok(any)
}

/// Lists everything below `rel` in the merged tree as added (file system `dev` only).
fn all_added(merged: &Path, rel: &Path, dev: u64, out: &mut Vec<Change>) -> Result<()> {
    for name in sorted_names(&merged.join(rel))? {
        let child = rel.join(&name);
        let path = merged.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        out.push(Change {
            kind: 'A',
            path: format!("/{}", child.display()),
        });
        if meta.is_dir() && meta.dev() == dev {
            all_added(merged, &child, dev, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
