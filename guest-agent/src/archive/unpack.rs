//! Unpacking a tar stream that may be hostile, below one destination directory.
//!
//! On the host the stream comes from a guest, whose root may have taken over the
//! agent, so it is attacker data. Every entry is resolved beneath the destination's
//! open directory ([`Dir`]), never by a path checked earlier:
//! - names are relative components only ([`confine`]); with
//!   [`UnpackOptions::below`] they must also start with the copied source's name;
//! - parents are opened with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a symlink on
//!   the way (planted by an earlier entry or by a guest writing to a shared directory
//!   meanwhile) fails the entry instead of being followed;
//! - files, symlinks, links and nodes are made under a temporary name with `O_EXCL`
//!   and renamed over the final one: a symlink there is replaced, never written
//!   through, and a failed entry leaves no partial file under its name;
//! - hard links may only point to files this stream made;
//! - directories that were there before keep their mode ([`Modes::Safe`]);
//! - [`Modes::Safe`] strips setuid, setgid, sticky and world-writable bits and
//!   applies the umask, as GNU tar does for an unprivileged user;
//! - [`Specials::Skip`] counts device nodes and fifos instead of making them;
//! - the stream's bytes and entries are bounded.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tar::{EntryType, Header};

use super::beneath::{self, Dir, Kind};
use super::{ArchiveError, Result};

/// Most entries the host accepts in one stream (each costs memory for the links and
/// directory modes tracked until the end).
pub const HOST_MAX_ENTRIES: u64 = 1_000_000;
/// Skipped entries named in [`Unpacked::skipped_names`]; the rest are only counted.
const SKIPPED_NAMES: usize = 10;
/// Mode of a directory the stream needs but does not describe.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Device nodes and fifos.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specials {
    /// Made as the stream says (the agent, as root in the guest).
    Create,
    /// Counted and skipped (the host, where they have no business).
    Skip,
}

/// What becomes of the modes the stream records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes {
    /// As recorded, setuid and all, and applied to directories already there too.
    Keep,
    /// No setuid, setgid, sticky or world-writable bit, `umask` applied; directories
    /// that were already there are left as they are.
    Safe { umask: u32 },
}

/// How to unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Keep the owners recorded in the stream (needs root), else the unpacker's.
    pub owners: bool,
    pub specials: Specials,
    pub modes: Modes,
    /// Most bytes read from the stream, headers included.
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Every entry's first component must be this name (`docker cp SRC DEST` accepts
    /// only what is below SRC's base name).
    pub below: Option<OsString>,
}

impl UnpackOptions {
    /// For streams from a guest: safe modes with the process's umask, no device nodes
    /// or fifos, owners not kept, at most [`HOST_MAX_ENTRIES`] entries.
    pub fn host() -> UnpackOptions {
        UnpackOptions {
            owners: false,
            specials: Specials::Skip,
            modes: Modes::Safe {
                umask: beneath::current_umask(),
            },
            max_bytes: u64::MAX,
            max_entries: HOST_MAX_ENTRIES,
            below: None,
        }
    }

    /// For the agent unpacking the host's stream into the container, as root.
    pub fn guest(owners: bool) -> UnpackOptions {
        UnpackOptions {
            owners,
            specials: Specials::Create,
            modes: Modes::Keep,
            max_bytes: u64::MAX,
            max_entries: u64::MAX,
            below: None,
        }
    }
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions::host()
    }
}

/// What an unpack did.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub entries: u64,
    /// Entries not made (device nodes and fifos with [`Specials::Skip`]).
    pub skipped: u64,
    /// The first few of them, by name.
    pub skipped_names: Vec<String>,
}

/// Where an unpacked stream lands: entries go below `dir`, their first path
/// component replaced by `rename` when set.
#[derive(Debug)]
pub struct Placement {
    pub dir: Dir,
    /// `dir` as the user named it, for messages.
    pub path: PathBuf,
    pub rename: Option<OsString>,
}

impl Placement {
    /// Entries go below the directory `path`, unrenamed.
    pub fn into(path: &Path) -> Result<Placement> {
        Ok(Placement {
            dir: Dir::open(path).map_err(super::io_at(path))?,
            path: path.to_owned(),
            rename: None,
        })
    }
}

/// Decides where a copy of a source (a directory or not, its contents only with
/// `SRC/.`) lands at `dest`, as `docker cp` does: an existing directory receives the
/// source inside it; a missing path (whose parent exists) becomes the copy; an
/// existing file is replaced by a file. The directory is opened here, once.
pub fn place(dest: &Path, source_is_dir: bool, contents_only: bool) -> Result<Placement> {
    let trailing_slash = dest.as_os_str().as_bytes().ends_with(b"/");
    let shown = dest.display();
    let refuse = |what: String| Err(ArchiveError::Placement(what));
    let exists_as_other = match Dir::open(dest) {
        Ok(dir) => {
            return Ok(Placement {
                dir,
                path: dest.to_owned(),
                rename: None,
            })
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(super::io_at(dest)(e)),
    };
    if exists_as_other && source_is_dir {
        return refuse(format!("cannot copy a directory to file {shown}"));
    }
    if trailing_slash && exists_as_other {
        return refuse(format!("{shown} is not a directory"));
    }
    if trailing_slash && !source_is_dir {
        return refuse(format!("destination directory {shown} does not exist"));
    }
    let name = match dest.file_name() {
        Some(n) if n.as_bytes() != b".." => n.to_owned(),
        _ => return refuse(format!("invalid destination {shown}")),
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let Ok(parent_dir) = Dir::open(&parent) else {
        return refuse(format!("destination directory {} does not exist", parent.display()));
    };
    if contents_only && !exists_as_other {
        parent_dir.mkdir(&name, 0o777).map_err(super::io_at(dest))?;
        let dir = parent_dir.open_dir(Path::new(&name)).map_err(super::io_at(dest))?;
        return Ok(Placement {
            dir,
            path: dest.to_owned(),
            rename: None,
        });
    }
    Ok(Placement {
        dir: parent_dir,
        path: parent,
        rename: Some(name),
    })
}

/// Turns an entry name into a relative path of normal components, or refuses it.
pub fn confine(name: &[u8]) -> Result<PathBuf, String> {
    if name.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    let mut out = PathBuf::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("name contains '..'".into()),
            _ => out.push(OsStr::from_bytes(part)),
        }
    }
    Ok(out)
}

fn renamed(rel: PathBuf, rename: Option<&OsStr>) -> PathBuf {
    let Some(new) = rename else { return rel };
    let mut parts = rel.iter();
    if parts.next().is_none() {
        return rel;
    }
    let mut out = PathBuf::from(new);
    out.extend(parts);
    out
}

/// Counts what the tar reader takes from the stream and stops it at a limit.
struct Bounded<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    max: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.max.saturating_sub(self.read.get());
        if left == 0 {
            // One byte past the limit tells a stream that ends exactly there apart.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                // More data, or a reader that failed past the limit: over it either way.
                _ => {
                    self.read.set(self.max.saturating_add(1));
                    Err(io::Error::other("stream limit reached"))
                }
            };
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// Unpacks a tar stream. `place` is called once, with whether the first entry is a
/// directory, and says where entries go.
pub fn unpack<R: Read>(
    input: R,
    options: UnpackOptions,
    place: impl FnOnce(bool) -> Result<Placement>,
) -> Result<Unpacked> {
    let read = Rc::new(Cell::new(0));
    let bounded = Bounded {
        inner: input,
        read: read.clone(),
        max: options.max_bytes,
    };
    let over_limit = || read.get() > options.max_bytes;
    let mut archive = tar::Archive::new(bounded);
    let mut place = Some(place);
    let mut unpacker: Option<Unpacker> = None;
    let entries = archive.entries().map_err(ArchiveError::Malformed)?;
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(_) if over_limit() => return Err(ArchiveError::Limit(options.max_bytes)),
            Err(e) => return Err(ArchiveError::Malformed(e)),
        };
        if entry.header().entry_type() == EntryType::XGlobalHeader {
            continue;
        }
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let bad = |reason: String| ArchiveError::Entry {
            name: shown.clone(),
            reason,
        };
        let rel = confine(&name).map_err(bad)?;
        check_below(&rel, options.below.as_deref()).map_err(bad)?;
        if let Some(decide) = place.take() {
            unpacker = Some(Unpacker::new(decide(entry.header().entry_type().is_dir())?, &options));
        }
        let Some(at) = unpacker.as_mut() else {
            unreachable!("placement decided above")
        };
        match at.entry(&mut entry, rel) {
            Ok(()) => {}
            Err(_) if over_limit() => return Err(ArchiveError::Limit(options.max_bytes)),
            Err(reason) => return Err(bad(reason)),
        }
        if at.done.entries > options.max_entries {
            return Err(ArchiveError::TooManyEntries(options.max_entries));
        }
    }
    // An empty stream places nothing (and creates nothing): the source may have
    // failed before it sent a single entry.
    match unpacker {
        Some(at) => at.finish(),
        None => Ok(Unpacked::default()),
    }
}

/// `docker cp CONTAINER:SRC DEST` takes only SRC's base name and what is below it.
fn check_below(rel: &Path, below: Option<&OsStr>) -> Result<(), String> {
    match (below, rel.iter().next()) {
        (None, _) | (_, None) => Ok(()),
        (Some(want), Some(first)) if first == want => Ok(()),
        (Some(want), Some(_)) => Err(format!(
            "outside the copied source (entries must be {:?} or below it)",
            want.to_string_lossy()
        )),
    }
}

/// A directory made or changed by the stream; its metadata is applied last, so a
/// read-only directory still receives its entries.
struct DirRecord {
    rel: PathBuf,
    identity: (u64, u64),
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime: Option<i64>,
}

struct Unpacker<'o> {
    at: Placement,
    options: &'o UnpackOptions,
    /// The last parent directory opened, by relative path.
    parent: Option<(PathBuf, Rc<Dir>)>,
    dirs: Vec<DirRecord>,
    dir_index: HashMap<PathBuf, usize>,
    /// Regular files this stream made: the only targets hard links may have.
    files: HashSet<PathBuf>,
    temp_count: u64,
    done: Unpacked,
}

impl<'o> Unpacker<'o> {
    fn new(at: Placement, options: &'o UnpackOptions) -> Self {
        Unpacker {
            at,
            options,
            parent: None,
            dirs: Vec::new(),
            dir_index: HashMap::new(),
            files: HashSet::new(),
            temp_count: 0,
            done: Unpacked::default(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, rel: PathBuf) -> Result<(), String> {
        let rel = renamed(rel, self.at.rename.as_deref());
        let Some(leaf) = rel.file_name().map(OsStr::to_owned) else {
            return Ok(()); // "./": the destination itself
        };
        self.done.entries += 1;
        let parent = self.parent_of(&rel)?;
        let header = entry.header().clone();
        match header.entry_type() {
            EntryType::Directory => self.directory(&parent, &leaf, rel, &header),
            // GNU sparse files are refused below: their holes would be unbounded.
            EntryType::Regular | EntryType::Continuous => {
                let mode = self.file_mode(&header);
                let owner = self.owner(&header)?;
                let mtime = mtime(&header);
                let size = entry.size();
                self.replace(&parent, &leaf, |dir, temp| {
                    let mut file = dir.create_file(temp, 0o600)?;
                    if io::copy(entry, &mut file)? != size {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
                    }
                    beneath::fchmod(file.as_raw_fd(), mode)?;
                    beneath::set_mtime(file.as_raw_fd(), mtime)
                })?;
                self.files.insert(rel);
                Ok(())
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or("symlink without a target")?.into_owned();
                let owner = self.owner(&header)?;
                self.replace(&parent, &leaf, |dir, temp| {
                    dir.symlink(&target, temp)?;
                    match owner {
                        Some((uid, gid)) => dir.chown(temp, uid, gid),
                        None => Ok(()),
                    }
                })
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or("hard link without a target")?
                    .into_owned();
                let source = confine(&link)?;
                check_below(&source, self.options.below.as_deref())?;
                let source = renamed(source, self.at.rename.as_deref());
                if !self.files.contains(&source) {
                    return Err("hard link to something that is not a file unpacked before".into());
                }
                let source_leaf = source.file_name().map(OsStr::to_owned).unwrap_or_default();
                let source_dir = self.open_parents(source.parent().unwrap_or(Path::new("")))?;
                self.replace(&parent, &leaf, |dir, temp| {
                    dir.hard_link(&source_dir, &source_leaf, temp)
                })?;
                self.files.insert(rel);
                Ok(())
            }
            kind @ (EntryType::Char | EntryType::Block | EntryType::Fifo) => {
                if self.options.specials == Specials::Skip {
                    self.skip(&rel);
                    return Ok(());
                }
                let (dev, mode) = node(&header, kind).map_err(|e| e.to_string())?;
                let owner = self.owner(&header)?;
                self.replace(&parent, &leaf, |dir, temp| {
                    dir.mknod(temp, mode, dev)?;
                    match owner {
                        Some((uid, gid)) => dir.chown(temp, uid, gid),
                        None => Ok(()),
                    }
                })
            }
            other => Err(format!("unsupported entry type {:?}", other.as_byte() as char)),
        }
    }

    fn skip(&mut self, rel: &Path) {
        self.done.skipped += 1;
        if self.done.skipped_names.len() < SKIPPED_NAMES {
            self.done.skipped_names.push(rel.display().to_string());
        }
    }

    fn directory(&mut self, parent: &Dir, leaf: &OsStr, rel: PathBuf, header: &Header) -> Result<(), String> {
        let mode = self.dir_mode(header.mode().unwrap_or(IMPLIED_DIR_MODE));
        let owner = self.owner(header)?;
        let mtime = Some(mtime(header));
        match parent.kind(leaf).map_err(|e| e.to_string())? {
            Some(Kind::Dir) => {
                if let Some(&i) = self.dir_index.get(&rel) {
                    let record = &mut self.dirs[i];
                    (record.mode, record.owner, record.mtime) = (mode, owner, mtime);
                } else if self.options.modes == Modes::Keep {
                    let dir = parent.open_dir(Path::new(leaf)).map_err(|e| e.to_string())?;
                    let identity = dir.identity().map_err(|e| e.to_string())?;
                    self.record(rel, identity, mode, owner, mtime);
                }
                Ok(())
            }
            Some(_) => Err("a non-directory exists there".into()),
            None => {
                parent.mkdir(leaf, 0o700).map_err(|e| e.to_string())?;
                let dir = parent.open_dir(Path::new(leaf)).map_err(|e| e.to_string())?;
                let identity = dir.identity().map_err(|e| e.to_string())?;
                self.record(rel, identity, mode, owner, mtime);
                Ok(())
            }
        }
    }

    fn record(&mut self, rel: PathBuf, identity: (u64, u64), mode: u32, owner: Option<(u32, u32)>, mtime: Option<i64>) {
        self.dir_index.insert(rel.clone(), self.dirs.len());
        self.dirs.push(DirRecord {
            rel,
            identity,
            mode,
            owner,
            mtime,
        });
    }

    /// The open parent directory of `rel`, made (as implied directories) where missing.
    fn parent_of(&mut self, rel: &Path) -> Result<Rc<Dir>, String> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        if let Some((path, dir)) = &self.parent {
            if path == parent {
                return Ok(dir.clone());
            }
        }
        let dir = Rc::new(self.open_parents(parent)?);
        self.parent = Some((parent.to_owned(), dir.clone()));
        Ok(dir)
    }

    /// Opens `rel` beneath the destination, one component at a time, making missing
    /// directories; a symlink or non-directory on the way fails it.
    fn open_parents(&mut self, rel: &Path) -> Result<Dir, String> {
        if let Ok(dir) = self.at.dir.open_dir(&dot(rel)) {
            return Ok(dir);
        }
        let mut dir = self.at.dir.open_dir(Path::new(".")).map_err(|e| e.to_string())?;
        let mut at = PathBuf::new();
        for part in rel.iter() {
            at.push(part);
            let next = match dir.open_dir(Path::new(part)) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    dir.mkdir(part, 0o700)
                        .map_err(|e| format!("create {}: {e}", at.display()))?;
                    let made = dir
                        .open_dir(Path::new(part))
                        .map_err(|e| describe(&dir, part, &at, e))?;
                    let identity = made.identity().map_err(|e| e.to_string())?;
                    let mode = self.dir_mode(IMPLIED_DIR_MODE);
                    self.record(at.clone(), identity, mode, None, None);
                    made
                }
                other => other.map_err(|e| describe(&dir, part, &at, e))?,
            };
            dir = next;
        }
        Ok(dir)
    }

    /// Makes the entry under a fresh temporary name with `make`, then renames it over
    /// `leaf`; the temporary is removed when either step fails.
    fn replace(
        &mut self,
        parent: &Dir,
        leaf: &OsStr,
        make: impl FnOnce(&Dir, &OsStr) -> io::Result<()>,
    ) -> Result<(), String> {
        if parent.kind(leaf).map_err(|e| e.to_string())? == Some(Kind::Dir) {
            return Err("a directory exists there".into());
        }
        self.temp_count += 1;
        let temp = OsString::from(format!(".hull-unpack-{}-{}", std::process::id(), self.temp_count));
        let made = make(parent, &temp).and_then(|()| parent.rename(&temp, leaf));
        if let Err(e) = made {
            let _ = parent.unlink(&temp);
            return Err(e.to_string());
        }
        Ok(())
    }

    fn file_mode(&self, header: &Header) -> u32 {
        let mode = header.mode().unwrap_or(0o644);
        match self.options.modes {
            Modes::Keep => mode & 0o7777,
            Modes::Safe { umask } => mode & 0o775 & !umask,
        }
    }

    fn dir_mode(&self, mode: u32) -> u32 {
        match self.options.modes {
            Modes::Keep => mode & 0o7777,
            // The owner keeps rwx, so later entries (and the user) can still get in.
            Modes::Safe { umask } => (mode & 0o775 & !umask) | 0o700,
        }
    }

    fn owner(&self, header: &Header) -> Result<Option<(u32, u32)>, String> {
        if !self.options.owners {
            return Ok(None);
        }
        let id = |v: io::Result<u64>, what: &str| {
            v.ok()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("{what} out of range"))
        };
        Ok(Some((id(header.uid(), "uid")?, id(header.gid(), "gid")?)))
    }

    /// Applies the directories' metadata, deepest first, to each directory only if it
    /// is still the one this stream made.
    fn finish(self) -> Result<Unpacked> {
        for record in self.dirs.iter().rev() {
            let err = |source| ArchiveError::Io {
                path: self.at.path.join(&record.rel).display().to_string(),
                source,
            };
            let Ok(dir) = self.at.dir.open_dir(&record.rel) else {
                continue;
            };
            if dir.identity().map_err(err)? != record.identity {
                continue;
            }
            if let Some((uid, gid)) = record.owner {
                dir.chown_self(uid, gid).map_err(err)?;
            }
            dir.chmod_self(record.mode).map_err(err)?;
            if let Some(mtime) = record.mtime {
                dir.set_mtime_self(mtime).map_err(err)?;
            }
        }
        Ok(self.done)
    }
}

fn dot(rel: &Path) -> PathBuf {
    match rel.as_os_str().is_empty() {
        true => PathBuf::from("."),
        false => rel.to_owned(),
    }
}

/// Why `part` of `dir` (at `at` below the destination) could not be opened.
fn describe(dir: &Dir, part: &OsStr, at: &Path, e: io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) if dir.kind(part).ok().flatten() == Some(Kind::Symlink) => {
            format!("would write through the symlink {}", at.display())
        }
        Some(libc::ENOTDIR) => format!("{} is not a directory", at.display()),
        Some(libc::EXDEV) => format!("{} leads outside the destination", at.display()),
        _ => format!("{}: {e}", at.display()),
    }
}

fn mtime(header: &Header) -> i64 {
    header.mtime().map_or(0, |t| i64::try_from(t).unwrap_or(i64::MAX))
}

/// The device number and full mode (type bits included) of a node entry.
fn node(header: &Header, kind: EntryType) -> io::Result<(libc::dev_t, u32)> {
    let type_bits = match kind {
        EntryType::Char => libc::S_IFCHR,
        EntryType::Block => libc::S_IFBLK,
        _ => libc::S_IFIFO,
    };
    let major = header.device_major()?.unwrap_or(0);
    let minor = header.device_minor()?.unwrap_or(0);
    Ok((libc::makedev(major, minor), type_bits | (header.mode()? & 0o7777)))
}
