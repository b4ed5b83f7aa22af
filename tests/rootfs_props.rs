//! Property tests: arbitrary bytes never panic the flattener, results are
//! deterministic, and random layer stacks read back (by a small EROFS reader here)
//! exactly as a path-based model of the OCI rules predicts.

mod rootfs_support;

use std::collections::BTreeMap;

use hull::rootfs::{Flattener, Limits, MemorySink};
use proptest::prelude::*;
use rootfs_support::*;

fn small_limits() -> Limits {
    Limits {
        max_image_bytes: 16 << 20,
        max_inodes: 10_000,
        ..Limits::default()
    }
}

fn try_flatten(layers: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut flattener = Flattener::new(MemorySink::default(), small_limits());
    for (i, bytes) in layers.iter().enumerate() {
        flattener
            .add_layer(&layer_digest(i + 1), bytes.as_slice())
            .map_err(|e| hull::rootfs::error_chain(&e))?;
    }
    flattener
        .finish()
        .map(|f| f.sink.0)
        .map_err(|e| hull::rootfs::error_chain(&e))
}

// ---- a small reader of the images hull writes ----

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Inode {
    mode: u64,
    size: u64,
    data: Vec<u8>,
}

fn read_inode(img: &[u8], nid: u64) -> Inode {
    let meta = le32(img, 1024 + 40) * 4096;
    let at = (meta + nid * 32) as usize;
    let format = le16(img, at);
    let extended = format & 1 == 1;
    let layout = (format >> 1) & 7;
    let icount = le16(img, at + 2);
    let mode = le16(img, at + 4);
    let size = if extended { le64(img, at + 8) } else { le32(img, at + 8) };
    let blkaddr = le32(img, at + 16) as usize * 4096;
    let isize = if extended { 64 } else { 32 };
    let xsize = if icount == 0 { 0 } else { 12 + (icount as usize - 1) * 4 };
    let len = size as usize;
    let data = if mode & 0o170000 == 0o020000 || mode & 0o170000 == 0o060000 || mode & 0o170000 == 0o010000 {
        Vec::new()
    } else if layout == 2 {
        let full = len - len % 4096;
        let mut data = img[blkaddr..blkaddr + full].to_vec();
        let tail = at + isize + xsize;
        data.extend_from_slice(&img[tail..tail + len % 4096]);
        data
    } else {
        assert_eq!(layout, 0, "unexpected layout");
        img[blkaddr..blkaddr + len].to_vec()
    };
    Inode { mode, size, data }
}

fn read_dir(dir: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    for block in dir.chunks(4096) {
        let count = le16(block, 8) as usize / 12;
        for i in 0..count {
            let nid = le64(block, i * 12);
            let start = le16(block, i * 12 + 8) as usize;
            let end = if i + 1 < count {
                le16(block, (i + 1) * 12 + 8) as usize
            } else {
                block.len()
            };
            let name: Vec<u8> = block[start..end].iter().copied().take_while(|&b| b != 0).collect();
            out.push((name, nid));
        }
    }
    out
}

/// Every path below the root with its kind and content, checking the structure.
fn read_tree(img: &[u8]) -> BTreeMap<String, (char, Vec<u8>)> {
    let root = le16(img, 1024 + 14);
    let mut tree = BTreeMap::new();
    let mut work = vec![(String::new(), root, root)];
    while let Some((path, nid, parent)) = work.pop() {
        let dir = read_inode(img, nid);
        assert_eq!(dir.size as usize, dir.data.len());
        let entries = read_dir(&dir.data);
        let names: Vec<&Vec<u8>> = entries.iter().map(|(n, _)| n).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "unsorted directory {path}");
        for (name, child) in entries {
            match name.as_slice() {
                b"." => assert_eq!(child, nid, "`.` of {path}"),
                b".." => assert_eq!(child, parent, "`..` of {path}"),
                _ => {
                    let name = String::from_utf8(name).unwrap();
                    assert!(!name.starts_with(".wh."), "whiteout {path}/{name} survived");
                    let inode = read_inode(img, child);
                    let full = format!("{path}/{name}");
                    let kind = match inode.mode & 0o170000 {
                        0o040000 => 'd',
                        0o100000 => 'f',
                        0o120000 => 'l',
                        other => panic!("unexpected mode {other:o}"),
                    };
                    if kind == 'd' {
                        work.push((full.clone(), child, nid));
                        tree.insert(full, (kind, Vec::new()));
                    } else {
                        tree.insert(full, (kind, inode.data));
                    }
                }
            }
        }
    }
    tree
}

// ---- a path-based model of the OCI rules ----

#[derive(Debug, Clone)]
enum Op {
    File(String, u8),
    Dir(String),
    Symlink(String, String),
    Whiteout(String),
    Opaque(String),
}

#[derive(Default)]
struct Model {
    /// path -> (kind, content, layer that last placed it or a path through it)
    paths: BTreeMap<String, (char, Vec<u8>, usize)>,
}

impl Model {
    fn parents(&mut self, path: &str, layer: usize) -> Result<(), ()> {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            let prefix = parts[..i].join("/");
            match self.paths.get_mut(&prefix) {
                Some(e) if e.0 == 'd' => e.2 = layer,
                Some(_) => return Err(()),
                None => {
                    self.paths.insert(prefix, ('d', Vec::new(), layer));
                }
            }
        }
        Ok(())
    }

    fn remove_tree(&mut self, path: &str) {
        let under = format!("{path}/");
        self.paths.retain(|p, _| p != path && !p.starts_with(&under));
    }

    fn place(&mut self, path: &str, kind: char, content: Vec<u8>, layer: usize) -> Result<(), ()> {
        self.parents(path, layer)?;
        if kind == 'd' {
            if let Some(e) = self.paths.get_mut(path).filter(|e| e.0 == 'd') {
                e.2 = layer;
                return Ok(());
            }
        }
        self.remove_tree(path);
        self.paths.insert(path.to_owned(), (kind, content, layer));
        Ok(())
    }

    fn apply(&mut self, op: &Op, layer: usize) -> Result<(), ()> {
        match op {
            Op::File(p, c) => self.place(p, 'f', vec![*c; usize::from(*c) * 37], layer),
            Op::Dir(p) => self.place(p, 'd', Vec::new(), layer),
            Op::Symlink(p, t) => self.place(p, 'l', t.clone().into_bytes(), layer),
            Op::Whiteout(p) => {
                self.parents(p, layer)?;
                if self.paths.get(p).is_some_and(|e| e.2 < layer) {
                    self.remove_tree(p);
                }
                Ok(())
            }
            Op::Opaque(d) => {
                let marker = if d.is_empty() {
                    ".wh..wh..opq".to_owned()
                } else {
                    format!("{d}/.wh..wh..opq")
                };
                self.parents(&marker, layer)?;
                let under = if d.is_empty() { String::new() } else { format!("{d}/") };
                self.paths.retain(|p, e| !p.starts_with(&under) || e.2 == layer);
                Ok(())
            }
        }
    }

    fn tree(&self) -> BTreeMap<String, (char, Vec<u8>)> {
        self.paths
            .iter()
            .map(|(p, (k, c, _))| (format!("/{p}"), (*k, c.clone())))
            .collect()
    }
}

fn to_entry(op: &Op) -> Entry {
    match op {
        Op::File(p, c) => file(p, &vec![*c; usize::from(*c) * 37], 0o644),
        Op::Dir(p) => dir(p, 0o755),
        Op::Symlink(p, t) => symlink(p, t),
        Op::Whiteout(p) => {
            let (parent, name) = p.rsplit_once('/').map_or(("", p.as_str()), |(a, b)| (a, b));
            let marker = if parent.is_empty() {
                format!(".wh.{name}")
            } else {
                format!("{parent}/.wh.{name}")
            };
            whiteout(&marker)
        }
        Op::Opaque(d) => whiteout(&if d.is_empty() {
            ".wh..wh..opq".to_owned()
        } else {
            format!("{d}/.wh..wh..opq")
        }),
    }
}

fn path_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4).prop_map(|p| p.join("/"))
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (path_strategy(), 0u8..200).prop_map(|(p, c)| Op::File(p, c)),
        3 => path_strategy().prop_map(Op::Dir),
        // Symlinks only under names never used as parents, so resolution stays simple.
        1 => (path_strategy(), prop::sample::select(vec!["/a", "b/c", "../x"]))
            .prop_map(|(p, t)| Op::Symlink(format!("{p}-s"), t.to_owned())),
        2 => path_strategy().prop_map(Op::Whiteout),
        1 => prop_oneof![Just(String::new()), path_strategy()].prop_map(Op::Opaque),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_layer_stacks_read_back_as_the_model_predicts(
        layers in prop::collection::vec(prop::collection::vec(op_strategy(), 0..10), 1..4)
    ) {
        let mut model = Model::default();
        let mut model_ok = true;
        for (i, ops) in layers.iter().enumerate() {
            for op in ops {
                if model.apply(op, i + 1).is_err() {
                    model_ok = false;
                }
            }
        }
        let tars: Vec<Vec<u8>> = layers.iter().map(|ops| layer(&ops.iter().map(to_entry).collect::<Vec<_>>())).collect();
        match try_flatten(&tars) {
            Ok(image) => {
                prop_assert!(model_ok, "hull accepted what the model refuses");
                prop_assert_eq!(read_tree(&image), model.tree());
                prop_assert_eq!(try_flatten(&tars).unwrap(), image);
            }
            Err(message) => {
                prop_assert!(!model_ok, "hull refused valid layers: {}", message);
                prop_assert!(message.contains("is not a directory"), "{}", message);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = try_flatten(&[bytes]);
    }

    #[test]
    fn mutated_layers_never_panic_and_fail_the_same_way_twice(
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 1..8),
        cut in 0usize..5000,
    ) {
        let mut bytes = layer(&[
            dir("d", 0o755),
            file("d/f", &[5; 700], 0o644).xattr("user.k", b"v"),
            symlink("d/s", "f"),
            hardlink("d/h", "d/f"),
            whiteout("d/.wh.x"),
        ]);
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut.min(bytes.len()));
        let first = try_flatten(&[bytes.clone()]);
        prop_assert_eq!(first, try_flatten(&[bytes]));
    }
}
