//! Bounds on what one image's layers may ask of the flattener.
//!
//! Every limit is checked before the memory or disk space it guards is used, so a
//! hostile layer meets a clear error instead of exhausting the host.

/// Configurable bounds for flattening one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Uncompressed bytes one layer's tar stream may hold, trailing padding included.
    pub max_layer_bytes: u64,
    /// Size of the finished disk image in bytes.
    pub max_image_bytes: u64,
    /// Tar entries in one layer.
    pub max_entries_per_layer: u64,
    /// Inodes (files, directories, links, devices) created across all layers.
    pub max_inodes: u64,
    /// Directory levels below the root.
    pub max_depth: usize,
    /// Bytes of an entry name or a link target.
    pub max_path_bytes: usize,
    /// Bytes of one PAX or GNU long-name extension record block.
    pub max_extension_bytes: u64,
    /// Bytes of all extended attributes of one inode, as stored.
    pub max_xattr_bytes: usize,
    /// Directory entries pointing at one inode.
    pub max_hard_links: u32,
    /// Symbolic links followed while resolving one path.
    pub max_symlink_follows: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 64 << 30,
            max_image_bytes: 64 << 30,
            max_entries_per_layer: 4_000_000,
            max_inodes: 4_000_000,
            max_depth: 1024,
            max_path_bytes: 4096,
            max_extension_bytes: 1 << 20,
            max_xattr_bytes: 64 << 10,
            max_hard_links: 1_000_000,
            max_symlink_follows: 40,
        }
    }
}
