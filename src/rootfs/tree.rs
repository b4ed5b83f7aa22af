//! The merged filesystem tree, in memory, with OCI layer semantics.
//!
//! Inodes live in one arena; directories map names to [`Dentry`]s, so hard links are
//! several dentries naming one inode. Each dentry remembers the layer that last
//! placed or passed through it: whiteouts and opaque markers remove only what lower
//! layers put there. Every walk is iterative.

use std::borrow::Cow;
use std::collections::BTreeMap;

/// Index of an inode in the arena.
pub type InodeId = u32;
/// The root directory.
pub const ROOT: InodeId = 0;
/// Layers are numbered from 1; 0 marks what no layer placed (the implicit root).
pub type LayerNo = u16;

/// One extended attribute in EROFS form: name index, name suffix, value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    pub index: u8,
    pub suffix: Box<[u8]>,
    pub value: Box<[u8]>,
}

/// Ownership, permissions, time and extended attributes of an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub mtime_nsec: u32,
    pub xattrs: Box<[Xattr]>,
}

impl Meta {
    /// Metadata of a directory that exists only because something below it does.
    pub fn implicit_dir() -> Self {
        Meta {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            xattrs: Box::new([]),
        }
    }
}

/// What an inode is, with its content.
#[derive(Debug)]
pub enum Body {
    Dir(BTreeMap<Box<[u8]>, Dentry>),
    /// A regular file whose data starts at `block` of the image (0 when empty).
    File {
        size: u64,
        block: u32,
    },
    Symlink(Box<[u8]>),
    CharDevice(u32),
    BlockDevice(u32),
    Fifo,
}

#[derive(Debug)]
pub struct Inode {
    pub meta: Meta,
    pub body: Body,
    /// Layer that created the inode.
    born: LayerNo,
    /// Last layer whose opaque marker already cleaned this directory.
    cleaned: LayerNo,
    /// Dentries ever made for the inode; bounds hard links conservatively.
    links: u32,
}

/// A name in a directory.
#[derive(Debug, Clone, Copy)]
pub struct Dentry {
    pub inode: InodeId,
    /// Last layer that placed this name or a path through it.
    pub layer: LayerNo,
}

/// Bounds the tree enforces while it grows.
#[derive(Debug, Clone, Copy)]
pub struct TreeLimits {
    pub max_inodes: u64,
    pub max_depth: usize,
    pub max_hard_links: u32,
    pub max_symlink_follows: u32,
}

/// Why a tree operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("`{name}` on the path is not a directory")]
    NotADirectory { name: String },
    #[error("more than {limit} symbolic links followed")]
    SymlinkLoop { limit: u32 },
    #[error("hard link target `{target}` does not exist")]
    DanglingHardLink { target: String },
    #[error("hard link target `{target}` is a directory")]
    HardLinkToDirectory { target: String },
    #[error("the root can only be a directory")]
    RootNotDirectory,
    #[error("{what} exceeds the limit of {limit}")]
    Limit { what: &'static str, limit: u64 },
}

/// The merged tree being built.
#[derive(Debug)]
pub struct Tree {
    inodes: Vec<Inode>,
    layer: LayerNo,
    limits: TreeLimits,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A resolved directory and how deep below the root it is.
#[derive(Debug, Clone, Copy)]
pub struct DirRef {
    pub inode: InodeId,
    pub depth: usize,
}

impl Tree {
    pub fn new(limits: TreeLimits) -> Self {
        let root = Inode {
            meta: Meta::implicit_dir(),
            body: Body::Dir(BTreeMap::new()),
            born: 0,
            cleaned: 0,
            links: 1,
        };
        Tree {
            inodes: vec![root],
            layer: 0,
            limits,
        }
    }

    /// Starts applying the next layer.
    pub fn begin_layer(&mut self, layer: LayerNo) {
        self.layer = layer;
    }

    pub fn inode(&self, id: InodeId) -> &Inode {
        &self.inodes[id as usize]
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// Children of a directory; empty for anything else.
    pub fn children(&self, id: InodeId) -> Option<&BTreeMap<Box<[u8]>, Dentry>> {
        match &self.inode(id).body {
            Body::Dir(children) => Some(children),
            _ => None,
        }
    }

    fn children_mut(&mut self, id: InodeId) -> &mut BTreeMap<Box<[u8]>, Dentry> {
        match &mut self.inodes[id as usize].body {
            Body::Dir(children) => children,
            // Callers only pass inodes that `resolve_dir` returned.
            _ => unreachable!("inode {id} is not a directory"),
        }
    }

    fn new_inode(&mut self, meta: Meta, body: Body) -> Result<InodeId, TreeError> {
        let limit = self.limits.max_inodes.min(u64::from(u32::MAX));
        if self.inodes.len() as u64 >= limit {
            return Err(TreeError::Limit {
                what: "number of inodes",
                limit,
            });
        }
        let id = self.inodes.len() as InodeId;
        self.inodes.push(Inode {
            meta,
            body,
            born: self.layer,
            cleaned: 0,
            links: 1,
        });
        Ok(id)
    }

    /// Replaces the root directory's metadata.
    pub fn set_root_meta(&mut self, meta: Meta) {
        self.inodes[ROOT as usize].meta = meta;
    }

    /// Walks `components` from the root, following symbolic links inside the image
    /// root only (an absolute target or `..` never leaves it). With `create`, missing
    /// directories are made and every directory passed is marked as placed by the
    /// current layer; without, a missing one gives `None`.
    pub fn resolve_dir(&mut self, components: &[&[u8]], create: bool) -> Result<Option<DirRef>, TreeError> {
        let mut stack: Vec<InodeId> = vec![ROOT];
        let mut pending: Vec<Cow<'_, [u8]>> = components.iter().rev().map(|c| Cow::Borrowed(*c)).collect();
        let mut follows = 0u32;
        while let Some(name) = pending.pop() {
            match &*name {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = *stack.last().unwrap_or(&ROOT);
            let Some(step) = self.step(dir, &name, create)? else {
                return Ok(None);
            };
            match step {
                Step::Dir(id) => {
                    if stack.len() > self.limits.max_depth {
                        return Err(TreeError::Limit {
                            what: "directory depth",
                            limit: self.limits.max_depth as u64,
                        });
                    }
                    stack.push(id);
                }
                Step::Symlink(target) => {
                    follows += 1;
                    if follows > self.limits.max_symlink_follows {
                        return Err(TreeError::SymlinkLoop {
                            limit: self.limits.max_symlink_follows,
                        });
                    }
                    if target.starts_with(b"/") {
                        stack.truncate(1);
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(|p| Cow::Owned(p.to_vec())));
                }
            }
        }
        let inode = *stack.last().unwrap_or(&ROOT);
        Ok(Some(DirRef {
            inode,
            depth: stack.len() - 1,
        }))
    }

    /// One step of a walk from directory `dir` through `name`.
    fn step(&mut self, dir: InodeId, name: &[u8], create: bool) -> Result<Option<Step>, TreeError> {
        let layer = self.layer;
        let Some(dentry) = self.children_mut(dir).get(name).copied() else {
            if !create {
                return Ok(None);
            }
            let id = self.new_inode(Meta::implicit_dir(), Body::Dir(BTreeMap::new()))?;
            self.children_mut(dir).insert(name.into(), Dentry { inode: id, layer });
            return Ok(Some(Step::Dir(id)));
        };
        match &self.inode(dentry.inode).body {
            Body::Dir(_) => {
                if create {
                    if let Some(d) = self.children_mut(dir).get_mut(name) {
                        d.layer = layer;
                    }
                }
                Ok(Some(Step::Dir(dentry.inode)))
            }
            Body::Symlink(target) => Ok(Some(Step::Symlink(target.to_vec()))),
            _ => Err(TreeError::NotADirectory { name: lossy(name) }),
        }
    }

    /// Places a new directory, merging with a directory already there.
    pub fn put_dir(&mut self, parent: DirRef, name: &[u8], meta: Meta) -> Result<(), TreeError> {
        self.check_depth(parent)?;
        let layer = self.layer;
        let existing = self.children_mut(parent.inode).get(name).copied();
        if let Some(d) = existing {
            if let Body::Dir(_) = self.inode(d.inode).body {
                self.inodes[d.inode as usize].meta = meta;
                if let Some(d) = self.children_mut(parent.inode).get_mut(name) {
                    d.layer = layer;
                }
                return Ok(());
            }
        }
        self.put(parent, name, meta, Body::Dir(BTreeMap::new()))
    }

    /// Places a new non-directory inode, replacing whatever had the name.
    pub fn put(&mut self, parent: DirRef, name: &[u8], meta: Meta, body: Body) -> Result<(), TreeError> {
        self.check_depth(parent)?;
        let id = self.new_inode(meta, body)?;
        let layer = self.layer;
        self.children_mut(parent.inode)
            .insert(name.into(), Dentry { inode: id, layer });
        Ok(())
    }

    fn check_depth(&self, parent: DirRef) -> Result<(), TreeError> {
        if parent.depth >= self.limits.max_depth {
            return Err(TreeError::Limit {
                what: "directory depth",
                limit: self.limits.max_depth as u64,
            });
        }
        Ok(())
    }

    /// Finds the hard-link target `components` (its last component not followed).
    pub fn link_target(&mut self, components: &[&[u8]]) -> Result<InodeId, TreeError> {
        let dangling = || TreeError::DanglingHardLink {
            target: lossy(&components.join(&b'/')),
        };
        let Some((last, parents)) = components.split_last() else {
            return Err(TreeError::HardLinkToDirectory { target: "/".into() });
        };
        let dir = self.resolve_dir(parents, false)?.ok_or_else(dangling)?;
        let dentry = self.children_mut(dir.inode).get(*last).copied().ok_or_else(dangling)?;
        if let Body::Dir(_) = self.inode(dentry.inode).body {
            return Err(TreeError::HardLinkToDirectory {
                target: lossy(&components.join(&b'/')),
            });
        }
        Ok(dentry.inode)
    }

    /// Adds `name` in `parent` as another name of `target`.
    pub fn link(&mut self, parent: DirRef, name: &[u8], target: InodeId) -> Result<(), TreeError> {
        let limit = self.limits.max_hard_links;
        let inode = &mut self.inodes[target as usize];
        if inode.links >= limit {
            return Err(TreeError::Limit {
                what: "hard links to one inode",
                limit: u64::from(limit),
            });
        }
        inode.links += 1;
        let layer = self.layer;
        self.children_mut(parent.inode)
            .insert(name.into(), Dentry { inode: target, layer });
        Ok(())
    }

    /// `.wh.NAME`: removes `name` from `parent` if a lower layer placed it.
    pub fn whiteout(&mut self, parent: DirRef, name: &[u8]) {
        let layer = self.layer;
        let children = self.children_mut(parent.inode);
        if children.get(name).is_some_and(|d| d.layer < layer) {
            children.remove(name);
        }
    }

    /// `.wh..wh..opq`: removes everything lower layers placed below `dir`, keeping
    /// what the current layer placed, in any order relative to the marker.
    pub fn make_opaque(&mut self, dir: DirRef) {
        let layer = self.layer;
        let mut work = vec![dir.inode];
        while let Some(id) = work.pop() {
            let inode = &mut self.inodes[id as usize];
            if inode.cleaned == layer || inode.born == layer {
                continue;
            }
            inode.cleaned = layer;
            let children = self.children_mut(id);
            children.retain(|_, d| d.layer == layer);
            let kept: Vec<InodeId> = children.values().map(|d| d.inode).collect();
            work.extend(kept.into_iter().filter(|&c| matches!(self.inode(c).body, Body::Dir(_))));
        }
    }
}

enum Step {
    Dir(InodeId),
    Symlink(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TreeLimits {
        TreeLimits {
            max_inodes: 1000,
            max_depth: 16,
            max_hard_links: 10,
            max_symlink_follows: 8,
        }
    }

    fn file() -> Body {
        Body::File { size: 0, block: 0 }
    }

    fn names(tree: &Tree, dir: InodeId) -> Vec<String> {
        tree.children(dir).unwrap().keys().map(|k| lossy(k)).collect()
    }

    #[test]
    fn resolve_dir_follows_absolute_symlink_inside_root() {
        let mut tree = Tree::new(limits());
        tree.begin_layer(1);
        let root = tree.resolve_dir(&[], true).unwrap().unwrap();
        tree.put(root, b"x", Meta::implicit_dir(), Body::Symlink(Box::from(&b"/"[..])))
            .unwrap();
        let dir = tree.resolve_dir(&[b"x", b"tmp"], true).unwrap().unwrap();
        tree.put(dir, b"y", Meta::implicit_dir(), file()).unwrap();
        assert_eq!(names(&tree, ROOT), vec!["tmp", "x"]);
    }

    #[test]
    fn resolve_dir_clamps_dotdot_at_root() {
        let mut tree = Tree::new(limits());
        tree.begin_layer(1);
        let root = tree.resolve_dir(&[], true).unwrap().unwrap();
        tree.put(
            root,
            b"up",
            Meta::implicit_dir(),
            Body::Symlink(Box::from(&b"../../../etc"[..])),
        )
        .unwrap();
        let dir = tree.resolve_dir(&[b"up"], true).unwrap().unwrap();
        assert_eq!(names(&tree, ROOT), vec!["etc", "up"]);
        assert_eq!(dir.depth, 1);
    }

    #[test]
    fn resolve_dir_refuses_symlink_loop() {
        let mut tree = Tree::new(limits());
        tree.begin_layer(1);
        let root = tree.resolve_dir(&[], true).unwrap().unwrap();
        tree.put(root, b"a", Meta::implicit_dir(), Body::Symlink(Box::from(&b"b"[..])))
            .unwrap();
        tree.put(root, b"b", Meta::implicit_dir(), Body::Symlink(Box::from(&b"a"[..])))
            .unwrap();
        assert_eq!(
            tree.resolve_dir(&[b"a", b"f"], true).unwrap_err(),
            TreeError::SymlinkLoop { limit: 8 }
        );
    }

    #[test]
    fn whiteout_keeps_names_from_the_same_layer() {
        let mut tree = Tree::new(limits());
        tree.begin_layer(1);
        let root = tree.resolve_dir(&[], true).unwrap().unwrap();
        tree.put(root, b"old", Meta::implicit_dir(), file()).unwrap();
        tree.begin_layer(2);
        tree.put(root, b"new", Meta::implicit_dir(), file()).unwrap();
        tree.whiteout(root, b"new");
        tree.whiteout(root, b"old");
        assert_eq!(names(&tree, ROOT), vec!["new"]);
    }

    #[test]
    fn make_opaque_clears_lower_grandchildren_under_touched_dirs() {
        let mut tree = Tree::new(limits());
        tree.begin_layer(1);
        let sub = tree.resolve_dir(&[b"d", b"sub"], true).unwrap().unwrap();
        tree.put(sub, b"lower", Meta::implicit_dir(), file()).unwrap();
        tree.begin_layer(2);
        let sub = tree.resolve_dir(&[b"d", b"sub"], true).unwrap().unwrap();
        tree.put(sub, b"upper", Meta::implicit_dir(), file()).unwrap();
        let d = tree.resolve_dir(&[b"d"], true).unwrap().unwrap();
        tree.make_opaque(d);
        assert_eq!(names(&tree, sub.inode), vec!["upper"]);
    }

    #[test]
    fn link_counts_toward_the_hard_link_limit() {
        let mut tree = Tree::new(limits());
        tree.begin_layer(1);
        let root = tree.resolve_dir(&[], true).unwrap().unwrap();
        tree.put(root, b"f", Meta::implicit_dir(), file()).unwrap();
        let target = tree.link_target(&[b"f"]).unwrap();
        for i in 0..9 {
            tree.link(root, format!("l{i}").as_bytes(), target).unwrap();
        }
        assert!(matches!(tree.link(root, b"l9", target), Err(TreeError::Limit { .. })));
    }
}
