//! Writes the metadata of a merged [`Tree`] as an uncompressed EROFS image.
//!
//! File data is already in the image (see [`super::data`]); this adds, after it:
//! directory and long-symlink blocks, then the metadata area (inodes in breadth-first
//! order, root first so its nid fits the superblock's 16 bits; no inode gets nid 0,
//! which `readdir` would hide), then the superblock.
//! Layout: `[block 0: superblock][file data][dir/symlink blocks][metadata]`.

pub mod dir;
pub mod format;

use std::collections::HashMap;
use std::io;

use self::dir::DirEntry;
use self::format::{
    fits_compact, xattr_ibody_len, DataLayout, FileType, InodeRecord, SuperBlock, BLOCK_SIZE, COMPACT_INODE_SIZE,
    EXTENDED_INODE_SIZE, INODE_SLOT, SUPER_OFFSET, XATTR_IBODY_HEADER_SIZE,
};
use super::sink::ImageSink;
use super::tree::{Body, Inode, InodeId, Meta, Tree, ROOT};

/// Why the image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing the image failed")]
    Io(#[source] io::Error),
    #[error("the image would exceed {limit} blocks")]
    TooLarge { limit: u64 },
}

/// What the finished image holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub size: u64,
    pub inodes: u64,
}

const NO_NID: u64 = u64::MAX;
const FLAG_INLINE: u8 = 1;

/// Where every reachable inode goes.
struct Plan {
    /// Reachable inodes, breadth-first from the root, each once.
    order: Vec<InodeId>,
    /// Parent of each directory.
    parent: Vec<InodeId>,
    nlink: Vec<u32>,
    nid: Vec<u64>,
    flags: Vec<u8>,
    build_time: (u64, u32),
}

/// Writes directories, symlinks, inodes and the superblock after file data ending
/// at block `data_end`; returns the image's size.
pub fn write_image<S: ImageSink>(
    tree: &Tree,
    sink: &mut S,
    data_end: u64,
    max_blocks: u64,
    uuid: [u8; 16],
) -> Result<ImageInfo, WriteError> {
    let mut plan = walk(tree);
    let meta_bytes = assign_nids(tree, &mut plan);
    let extra_blocks = count_extra_blocks(tree, &plan);
    let meta_blkaddr = data_end + extra_blocks;
    // fsck.erofs 1.5 reads an xattr header after every inode, even without xattrs:
    // keep that many bytes after the last one inside the image.
    let blocks = meta_blkaddr + (meta_bytes + XATTR_IBODY_HEADER_SIZE as u64).div_ceil(BLOCK_SIZE);
    let limit = max_blocks.min(u64::from(u32::MAX));
    if blocks > limit {
        return Err(WriteError::TooLarge { limit });
    }
    write_metadata(tree, &plan, sink, data_end, meta_blkaddr).map_err(WriteError::Io)?;
    let sb = SuperBlock {
        root_nid: plan.nid[ROOT as usize] as u16,
        inos: plan.order.len() as u64,
        build_time: plan.build_time.0,
        build_time_nsec: plan.build_time.1,
        blocks: blocks as u32,
        meta_blkaddr: meta_blkaddr as u32,
        uuid,
    };
    sink.write_at(&sb.encode(), SUPER_OFFSET).map_err(WriteError::Io)?;
    sink.set_len(blocks * BLOCK_SIZE).map_err(WriteError::Io)?;
    Ok(ImageInfo {
        size: blocks * BLOCK_SIZE,
        inodes: plan.order.len() as u64,
    })
}

/// Breadth-first walk: reachable inodes, parents, link counts, build time.
fn walk(tree: &Tree) -> Plan {
    let count = tree.inode_count();
    let mut plan = Plan {
        order: vec![ROOT],
        parent: vec![ROOT; count],
        nlink: vec![0; count],
        nid: vec![NO_NID; count],
        flags: vec![0; count],
        build_time: (0, 0),
    };
    plan.nlink[ROOT as usize] = 2;
    let mut next = 0;
    while next < plan.order.len() {
        let dir = plan.order[next];
        next += 1;
        for dentry in tree.children(dir).into_iter().flat_map(|c| c.values()) {
            visit_child(tree, &mut plan, dir, dentry.inode);
        }
    }
    plan.build_time = most_common_time(tree, &plan.order);
    plan
}

fn visit_child(tree: &Tree, plan: &mut Plan, dir: InodeId, child: InodeId) {
    let c = child as usize;
    if matches!(tree.inode(child).body, Body::Dir(_)) {
        plan.parent[c] = dir;
        plan.nlink[c] = 2;
        plan.nlink[dir as usize] += 1;
        plan.order.push(child);
        return;
    }
    if plan.nlink[c] == 0 {
        plan.order.push(child);
    }
    plan.nlink[c] += 1;
}

/// The most frequent modification time (earliest on ties): inodes with it can use
/// the compact form.
fn most_common_time(tree: &Tree, order: &[InodeId]) -> (u64, u32) {
    let mut counts: HashMap<(u64, u32), u64> = HashMap::new();
    for &id in order {
        let meta = &tree.inode(id).meta;
        *counts.entry((meta.mtime, meta.mtime_nsec)).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(t, _)| t)
        .unwrap_or((0, 0))
}

/// Size of the content stored in directory or symlink blocks; 0 for other kinds.
fn content_size(tree: &Tree, plan: &Plan, id: InodeId) -> u64 {
    match &tree.inode(id).body {
        Body::Dir(_) => dir::pack(&dir_entries(tree, plan, id), |_| {}),
        Body::Symlink(target) => target.len() as u64,
        _ => 0,
    }
}

fn is_extended(tree: &Tree, plan: &Plan, id: InodeId, size: u64) -> bool {
    let meta = &tree.inode(id).meta;
    let nlink = plan.nlink[id as usize];
    !fits_compact(
        meta.uid,
        meta.gid,
        nlink,
        size,
        (meta.mtime, meta.mtime_nsec),
        plan.build_time,
    )
}

fn record_size(tree: &Tree, id: InodeId) -> u64 {
    match tree.inode(id).body {
        Body::File { size, .. } => size,
        _ => 0,
    }
}

fn xattr_len(meta: &Meta) -> u64 {
    xattr_ibody_len(meta.xattrs.iter().map(|x| (x.suffix.len(), x.value.len()))) as u64
}

/// Assigns nids in walk order, choosing for each directory and symlink whether its
/// tail fits inline in the same metadata block; returns the metadata size.
fn assign_nids(tree: &Tree, plan: &mut Plan) -> u64 {
    // nid 0 would be inode number 0, which readdir(3) treats as a deleted entry.
    let mut cursor = INODE_SLOT;
    for i in 0..plan.order.len() {
        let id = plan.order[i];
        let content = content_size(tree, plan, id);
        let size = content.max(record_size(tree, id));
        let head = if is_extended(tree, plan, id, size) {
            EXTENDED_INODE_SIZE
        } else {
            COMPACT_INODE_SIZE
        } + xattr_len(&tree.inode(id).meta);
        let (start, inline) = place(cursor, head, content % BLOCK_SIZE);
        plan.nid[id as usize] = start / INODE_SLOT;
        if inline {
            plan.flags[id as usize] |= FLAG_INLINE;
        }
        cursor = start + head + if inline { content % BLOCK_SIZE } else { 0 };
    }
    cursor
}

/// Where an inode with `head` bytes (inode and xattrs) and a `tail` goes: the tail
/// may not cross a block, so the inode may move to the next block.
fn place(cursor: u64, head: u64, tail: u64) -> (u64, bool) {
    let start = cursor.next_multiple_of(INODE_SLOT);
    if tail == 0 {
        return (start, false);
    }
    if (start + head) % BLOCK_SIZE + tail <= BLOCK_SIZE {
        return (start, true);
    }
    if head + tail <= BLOCK_SIZE {
        return (cursor.next_multiple_of(BLOCK_SIZE), true);
    }
    (start, false)
}

/// Blocks directories and symlinks need outside the metadata area.
fn count_extra_blocks(tree: &Tree, plan: &Plan) -> u64 {
    plan.order
        .iter()
        .map(|&id| extra_blocks(content_size(tree, plan, id), plan.flags[id as usize]))
        .sum()
}

fn extra_blocks(content: u64, flags: u8) -> u64 {
    if flags & FLAG_INLINE != 0 {
        content / BLOCK_SIZE
    } else {
        content.div_ceil(BLOCK_SIZE)
    }
}

fn file_type(inode: &Inode) -> FileType {
    match inode.body {
        Body::Dir(_) => FileType::Directory,
        Body::File { .. } => FileType::Regular,
        Body::Symlink(_) => FileType::Symlink,
        Body::CharDevice(_) => FileType::CharDevice,
        Body::BlockDevice(_) => FileType::BlockDevice,
        Body::Fifo => FileType::Fifo,
    }
}

/// Entries of directory `id` including `.` and `..`, sorted.
fn dir_entries<'t>(tree: &'t Tree, plan: &Plan, id: InodeId) -> Vec<DirEntry<'t>> {
    let children = tree.children(id).into_iter().flat_map(|c| c.iter());
    let mut entries: Vec<DirEntry<'t>> = children
        .map(|(name, d)| DirEntry {
            name,
            nid: plan.nid[d.inode as usize],
            file_type: file_type(tree.inode(d.inode)),
        })
        .collect();
    let parent = plan.parent[id as usize];
    entries.push(DirEntry {
        name: b".",
        nid: plan.nid[id as usize],
        file_type: FileType::Directory,
    });
    entries.push(DirEntry {
        name: b"..",
        nid: plan.nid[parent as usize],
        file_type: FileType::Directory,
    });
    dir::sort_entries(&mut entries);
    entries
}

/// Buffers the metadata area and writes it in large sequential pieces.
struct MetaWriter<'s, S> {
    sink: &'s mut S,
    base: u64,
    written: u64,
    buf: Vec<u8>,
}

impl<S: ImageSink> MetaWriter<'_, S> {
    fn position(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn pad_to(&mut self, offset: u64) -> io::Result<()> {
        let gap = offset - self.position();
        self.buf.resize(self.buf.len() + gap as usize, 0);
        self.flush_if_large()
    }

    fn flush_if_large(&mut self) -> io::Result<()> {
        if self.buf.len() >= 1 << 20 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sink.write_at(&self.buf, self.base + self.written)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

fn write_metadata<S: ImageSink>(
    tree: &Tree,
    plan: &Plan,
    sink: &mut S,
    data_end: u64,
    meta_blkaddr: u64,
) -> io::Result<()> {
    let mut next_block = data_end;
    let mut meta = MetaWriter {
        sink,
        base: meta_blkaddr * BLOCK_SIZE,
        written: 0,
        buf: Vec::with_capacity(2 << 20),
    };
    for (ino, &id) in plan.order.iter().enumerate() {
        meta.pad_to(plan.nid[id as usize] * INODE_SLOT)?;
        write_inode(tree, plan, id, ino as u32 + 1, &mut next_block, &mut meta)?;
    }
    meta.flush()
}

/// Writes one inode with its xattrs and inline tail; full blocks of directory or
/// symlink content go to `next_block` onwards.
fn write_inode<S: ImageSink>(
    tree: &Tree,
    plan: &Plan,
    id: InodeId,
    ino: u32,
    next_block: &mut u64,
    meta: &mut MetaWriter<'_, S>,
) -> io::Result<()> {
    let inode = tree.inode(id);
    let content = content_bytes(tree, plan, id);
    let inline = plan.flags[id as usize] & FLAG_INLINE != 0;
    let size = (content.len() as u64).max(record_size(tree, id));
    let (layout, i_u) = match &inode.body {
        Body::File { block, .. } => (DataLayout::FlatPlain, *block),
        Body::CharDevice(dev) | Body::BlockDevice(dev) => (DataLayout::FlatPlain, *dev),
        Body::Fifo => (DataLayout::FlatPlain, 0),
        Body::Dir(_) | Body::Symlink(_) => {
            let blocks = extra_blocks(content.len() as u64, plan.flags[id as usize]);
            let start = *next_block;
            write_blocks(meta.sink, &content, start, blocks)?;
            *next_block += blocks;
            let layout = if inline {
                DataLayout::FlatInline
            } else {
                DataLayout::FlatPlain
            };
            (layout, if blocks > 0 { start as u32 } else { 0 })
        }
    };
    let record = inode_record(tree, plan, id, ino, layout, size, i_u);
    record.encode(&mut meta.buf);
    encode_xattrs(&inode.meta, &mut meta.buf);
    if inline {
        let tail_start = content.len() - content.len() % BLOCK_SIZE as usize;
        meta.buf.extend_from_slice(&content[tail_start..]);
    }
    meta.flush_if_large()
}

fn content_bytes(tree: &Tree, plan: &Plan, id: InodeId) -> Vec<u8> {
    match &tree.inode(id).body {
        Body::Dir(_) => {
            let mut bytes = Vec::new();
            dir::pack(&dir_entries(tree, plan, id), |block| bytes.extend_from_slice(block));
            bytes
        }
        Body::Symlink(target) => target.to_vec(),
        _ => Vec::new(),
    }
}

fn write_blocks<S: ImageSink>(sink: &mut S, content: &[u8], start: u64, blocks: u64) -> io::Result<()> {
    let len = (blocks * BLOCK_SIZE).min(content.len() as u64) as usize;
    if len > 0 {
        sink.write_at(&content[..len], start * BLOCK_SIZE)?;
    }
    Ok(())
}

fn inode_record(
    tree: &Tree,
    plan: &Plan,
    id: InodeId,
    ino: u32,
    layout: DataLayout,
    size: u64,
    i_u: u32,
) -> InodeRecord {
    let inode = tree.inode(id);
    let meta = &inode.meta;
    let xattrs = xattr_len(meta) as usize;
    InodeRecord {
        extended: is_extended(tree, plan, id, size),
        layout,
        xattr_icount: if xattrs == 0 {
            0
        } else {
            ((xattrs - XATTR_IBODY_HEADER_SIZE) / 4 + 1) as u16
        },
        mode: type_bits(&inode.body) | meta.mode,
        nlink: plan.nlink[id as usize],
        size,
        i_u,
        ino,
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime,
        mtime_nsec: meta.mtime_nsec,
    }
}

fn type_bits(body: &Body) -> u16 {
    (match body {
        Body::Dir(_) => libc::S_IFDIR,
        Body::File { .. } => libc::S_IFREG,
        Body::Symlink(_) => libc::S_IFLNK,
        Body::CharDevice(_) => libc::S_IFCHR,
        Body::BlockDevice(_) => libc::S_IFBLK,
        Body::Fifo => libc::S_IFIFO,
    }) as u16
}

fn encode_xattrs(meta: &Meta, out: &mut Vec<u8>) {
    if meta.xattrs.is_empty() {
        return;
    }
    out.extend_from_slice(&[0u8; XATTR_IBODY_HEADER_SIZE]);
    for xattr in meta.xattrs.iter() {
        let start = out.len();
        out.push(xattr.suffix.len() as u8);
        out.push(xattr.index);
        out.extend_from_slice(&(xattr.value.len() as u16).to_le_bytes());
        out.extend_from_slice(&xattr.suffix);
        out.extend_from_slice(&xattr.value);
        let padded = (out.len() - start).next_multiple_of(4);
        out.resize(start + padded, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn place_moves_an_inode_whose_tail_would_cross_a_block() {
        assert_eq!(place(0, 32, 100), (0, true));
        assert_eq!(place(4000, 32, 100), (4096, true));
        assert_eq!(place(4000, 64, 0), (4000, false));
        assert_eq!(place(10, 4000, 200), (32, false));
    }
}
