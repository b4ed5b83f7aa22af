//! EROFS on-disk structures (uncompressed subset), encoded little-endian.
//!
//! Facts from the kernel's `fs/erofs/erofs_fs.h`: 4 KiB blocks, the superblock at
//! byte 1024, 32-byte compact and 64-byte extended inodes addressed by `nid`
//! (byte offset from the metadata start divided by 32), 12-byte dirents sorted by
//! name, inline xattrs after the inode, tail data inline after the xattrs.

pub const BLOCK_BITS: u8 = 12;
pub const BLOCK_SIZE: u64 = 1 << BLOCK_BITS;
pub const SUPER_OFFSET: u64 = 1024;
pub const MAGIC: u32 = 0xE0F5_E1E2;
pub const INODE_SLOT: u64 = 32;
pub const COMPACT_INODE_SIZE: u64 = 32;
pub const EXTENDED_INODE_SIZE: u64 = 64;
pub const DIRENT_SIZE: u64 = 12;
pub const XATTR_IBODY_HEADER_SIZE: usize = 12;
pub const XATTR_ENTRY_HEADER_SIZE: usize = 4;

/// How an inode's data is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataLayout {
    /// Whole blocks starting at `raw_blkaddr`.
    FlatPlain = 0,
    /// Whole blocks, then the tail right after the inode and its xattrs.
    FlatInline = 2,
}

/// Directory entry file types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular = 1,
    Directory = 2,
    CharDevice = 3,
    BlockDevice = 4,
    Fifo = 5,
    Symlink = 7,
}

/// Everything an on-disk inode records.
#[derive(Debug, Clone)]
pub struct InodeRecord {
    pub extended: bool,
    pub layout: DataLayout,
    pub xattr_icount: u16,
    /// File type bits and permissions, as in `st_mode`.
    pub mode: u16,
    pub nlink: u32,
    pub size: u64,
    /// Block address, or device number for devices.
    pub i_u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub mtime_nsec: u32,
}

impl InodeRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let format = u16::from(self.extended) | ((self.layout as u16) << 1);
        out.extend_from_slice(&format.to_le_bytes());
        out.extend_from_slice(&self.xattr_icount.to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
        if self.extended {
            self.encode_extended_tail(out);
        } else {
            self.encode_compact_tail(out);
        }
    }

    // The caller chose the compact form only where every value fits (see `fits_compact`).
    fn encode_compact_tail(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.nlink as u16).to_le_bytes());
        out.extend_from_slice(&(self.size as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.i_u.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&(self.uid as u16).to_le_bytes());
        out.extend_from_slice(&(self.gid as u16).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }

    fn encode_extended_tail(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.i_u.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.gid.to_le_bytes());
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&self.nlink.to_le_bytes());
        out.extend_from_slice(&[0u8; 16]);
    }
}

/// Whether an inode can use the 32-byte form, whose time is the image build time.
pub fn fits_compact(uid: u32, gid: u32, nlink: u32, size: u64, time: (u64, u32), build_time: (u64, u32)) -> bool {
    uid <= 0xffff && gid <= 0xffff && nlink <= 0xffff && size <= u64::from(u32::MAX) && time == build_time
}

/// Encodes a device number the way the kernel's `new_encode_dev` does; `None` when
/// the major or minor number does not fit.
pub fn encode_dev(major: u64, minor: u64) -> Option<u32> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    let (major, minor) = (major as u32, minor as u32);
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The superblock fields hull sets; the rest stay zero.
#[derive(Debug, Clone)]
pub struct SuperBlock {
    pub root_nid: u16,
    pub inos: u64,
    pub build_time: u64,
    pub build_time_nsec: u32,
    pub blocks: u32,
    pub meta_blkaddr: u32,
    pub uuid: [u8; 16],
}

impl SuperBlock {
    pub fn encode(&self) -> [u8; 128] {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // checksum (feature not set)
        out.extend_from_slice(&0u32.to_le_bytes()); // feature_compat
        out.push(BLOCK_BITS);
        out.push(0); // sb_extslots
        out.extend_from_slice(&self.root_nid.to_le_bytes());
        out.extend_from_slice(&self.inos.to_le_bytes());
        out.extend_from_slice(&self.build_time.to_le_bytes());
        out.extend_from_slice(&self.build_time_nsec.to_le_bytes());
        out.extend_from_slice(&self.blocks.to_le_bytes());
        out.extend_from_slice(&self.meta_blkaddr.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // xattr_blkaddr: no shared xattrs
        out.extend_from_slice(&self.uuid);
        out.extend_from_slice(&[0u8; 16]); // volume_name
        out.extend_from_slice(&0u32.to_le_bytes()); // feature_incompat
        out.resize(128, 0);
        let mut block = [0u8; 128];
        block.copy_from_slice(&out);
        block
    }
}

/// Appends one dirent.
pub fn encode_dirent(out: &mut Vec<u8>, nid: u64, nameoff: u16, file_type: FileType) {
    out.extend_from_slice(&nid.to_le_bytes());
    out.extend_from_slice(&nameoff.to_le_bytes());
    out.push(file_type as u8);
    out.push(0);
}

/// Maps an xattr name to its EROFS name index and the suffix stored on disk.
pub fn xattr_prefix(name: &[u8]) -> Option<(u8, &[u8])> {
    const EXACT: [(&[u8], u8); 2] = [(b"system.posix_acl_access", 2), (b"system.posix_acl_default", 3)];
    const PREFIXES: [(&[u8], u8); 4] = [(b"user.", 1), (b"trusted.", 4), (b"lustre.", 5), (b"security.", 6)];
    if let Some((_, index)) = EXACT.iter().find(|(full, _)| *full == name) {
        return Some((*index, &name[name.len()..]));
    }
    PREFIXES.iter().find_map(|(prefix, index)| {
        name.strip_prefix(*prefix)
            .filter(|s| !s.is_empty())
            .map(|s| (*index, s))
    })
}

/// Bytes an inline xattr body takes, header included; 0 without xattrs.
pub fn xattr_ibody_len<'a>(entries: impl Iterator<Item = (usize, usize)> + 'a) -> usize {
    let mut total = 0;
    let mut any = false;
    for (suffix, value) in entries {
        any = true;
        total += (XATTR_ENTRY_HEADER_SIZE + suffix + value).next_multiple_of(4);
    }
    if any {
        XATTR_IBODY_HEADER_SIZE + total
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_dev_matches_kernel_layout() {
        assert_eq!(encode_dev(1, 3), Some(0x103));
        assert_eq!(encode_dev(8, 0x12345), Some(0x45 | (8 << 8) | (0x12300 << 12)));
        assert_eq!(encode_dev(4096, 0), None);
        assert_eq!(encode_dev(0, 1 << 20), None);
    }

    #[test]
    fn inode_forms_have_their_sizes() {
        let rec = InodeRecord {
            extended: false,
            layout: DataLayout::FlatPlain,
            xattr_icount: 0,
            mode: 0o100644,
            nlink: 1,
            size: 5,
            i_u: 3,
            ino: 1,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
        };
        let mut out = Vec::new();
        rec.encode(&mut out);
        assert_eq!(out.len(), 32);
        out.clear();
        InodeRecord { extended: true, ..rec }.encode(&mut out);
        assert_eq!(out.len(), 64);
    }

    #[test]
    fn xattr_prefix_knows_kernel_indexes() {
        assert_eq!(xattr_prefix(b"security.capability"), Some((6, &b"capability"[..])));
        assert_eq!(xattr_prefix(b"user.x"), Some((1, &b"x"[..])));
        assert_eq!(xattr_prefix(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(xattr_prefix(b"system.other"), None);
        assert_eq!(xattr_prefix(b"user."), None);
    }
}
