//! Applies one tar member to the merged tree, streaming its data into the image.

use std::io::Read;

use super::data::DataWriter;
use super::erofs::format::{encode_dev, xattr_prefix, XATTR_ENTRY_HEADER_SIZE};
use super::error::EntryError;
use super::path::{self, Leaf};
use super::sink::ImageSink;
use super::tar::{EntryHeader, EntryKind, TarReader};
use super::tree::{Body, Meta, Tree, Xattr};
use super::Limits;

/// The longest symlink target the kernel follows (`PATH_MAX` less the NUL).
const SYMLINK_MAX: usize = 4095;

/// Applies `header` (whose data `tar` is positioned at) to `tree`.
pub fn apply_entry<R: Read, S: ImageSink>(
    tree: &mut Tree,
    data: &mut DataWriter<S>,
    tar: &mut TarReader<R>,
    header: &EntryHeader,
    limits: &Limits,
) -> Result<(), EntryError> {
    let components = path::components(&header.path, limits.max_path_bytes)?;
    let Some((last, parents)) = components.split_last() else {
        return apply_root(tree, header, limits);
    };
    match path::leaf(last)? {
        Leaf::Opaque => {
            let dir = resolve(tree, parents)?;
            tree.make_opaque(dir);
        }
        Leaf::Whiteout(hidden) => {
            let dir = resolve(tree, parents)?;
            tree.whiteout(dir, hidden);
        }
        Leaf::Name(name) => place(tree, data, tar, header, parents, name, limits)?,
    }
    Ok(())
}

fn resolve(tree: &mut Tree, parents: &[&[u8]]) -> Result<super::tree::DirRef, EntryError> {
    // With `create`, resolution always yields a directory.
    tree.resolve_dir(parents, true)?
        .ok_or(EntryError::Tree(super::tree::TreeError::RootNotDirectory))
}

fn apply_root(tree: &mut Tree, header: &EntryHeader, limits: &Limits) -> Result<(), EntryError> {
    if header.kind != EntryKind::Directory {
        return Err(super::tree::TreeError::RootNotDirectory.into());
    }
    tree.set_root_meta(meta_of(header, limits)?);
    Ok(())
}

fn place<R: Read, S: ImageSink>(
    tree: &mut Tree,
    data: &mut DataWriter<S>,
    tar: &mut TarReader<R>,
    header: &EntryHeader,
    parents: &[&[u8]],
    name: &[u8],
    limits: &Limits,
) -> Result<(), EntryError> {
    let meta = meta_of(header, limits)?;
    let dir = resolve(tree, parents)?;
    let body = match header.kind {
        EntryKind::Directory => return Ok(tree.put_dir(dir, name, meta)?),
        EntryKind::HardLink => {
            let target = path::components(&header.link_target, limits.max_path_bytes)?;
            let inode = tree.link_target(&target)?;
            return Ok(tree.link(dir, name, inode)?);
        }
        EntryKind::Regular => Body::File {
            size: header.size,
            block: data.write_entry(tar, header.size)?,
        },
        EntryKind::Symlink => Body::Symlink(symlink_target(&header.link_target)?.into()),
        EntryKind::CharDevice => Body::CharDevice(device(header)?),
        EntryKind::BlockDevice => Body::BlockDevice(device(header)?),
        EntryKind::Fifo => Body::Fifo,
    };
    Ok(tree.put(dir, name, meta, body)?)
}

fn symlink_target(target: &[u8]) -> Result<&[u8], EntryError> {
    if target.is_empty() || target.len() > SYMLINK_MAX || target.contains(&0) {
        return Err(EntryError::BadSymlinkTarget { len: target.len() });
    }
    Ok(target)
}

fn device(header: &EntryHeader) -> Result<u32, EntryError> {
    encode_dev(header.dev_major, header.dev_minor).ok_or(EntryError::DeviceOutOfRange {
        major: header.dev_major,
        minor: header.dev_minor,
    })
}

fn id(what: &'static str, value: u64) -> Result<u32, EntryError> {
    u32::try_from(value).map_err(|_| EntryError::IdOutOfRange { what, value })
}

/// Ownership, mode, time and xattrs of an entry, validated.
fn meta_of(header: &EntryHeader, limits: &Limits) -> Result<Meta, EntryError> {
    Ok(Meta {
        mode: (header.mode & 0o7777) as u16,
        uid: id("uid", header.uid)?,
        gid: id("gid", header.gid)?,
        mtime: header.mtime,
        mtime_nsec: header.mtime_nsec,
        xattrs: xattrs_of(header, limits)?,
    })
}

/// Maps PAX xattrs to EROFS form; a later record for the same name wins.
fn xattrs_of(header: &EntryHeader, limits: &Limits) -> Result<Box<[Xattr]>, EntryError> {
    if header.xattrs.is_empty() {
        return Ok(Box::new([]));
    }
    let mut xattrs: Vec<Xattr> = Vec::with_capacity(header.xattrs.len());
    let mut total = 0usize;
    for (name, value) in header.xattrs.iter().rev() {
        let lossy = || String::from_utf8_lossy(name).into_owned();
        let (index, suffix) = xattr_prefix(name).ok_or_else(|| EntryError::UnsupportedXattr { name: lossy() })?;
        if suffix.len() > 255 || value.len() > usize::from(u16::MAX) {
            return Err(EntryError::XattrsTooLarge {
                limit: limits.max_xattr_bytes,
            });
        }
        if xattrs.iter().any(|x| x.index == index && *x.suffix == *suffix) {
            continue;
        }
        total += XATTR_ENTRY_HEADER_SIZE + suffix.len() + value.len();
        if total > limits.max_xattr_bytes {
            return Err(EntryError::XattrsTooLarge {
                limit: limits.max_xattr_bytes,
            });
        }
        xattrs.push(Xattr {
            index,
            suffix: suffix.into(),
            value: value.as_slice().into(),
        });
    }
    xattrs.sort();
    Ok(xattrs.into_boxed_slice())
}
