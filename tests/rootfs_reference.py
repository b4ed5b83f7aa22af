#!/usr/bin/env python3
"""Reference reader for hull's flattened root disks.

Applies OCI layers with Python's tarfile, independently of hull's Rust code, and
compares the resulting tree with a directory (a mounted or extracted EROFS image):
names, types, modes, owners, sizes, content hashes, link targets, device numbers,
mtimes, xattrs and hard-link identity.

    rootfs_reference.py compare [--no-xattrs] [--no-mtime] DIR LAYER...
    rootfs_reference.py model LAYER...      # print the model as JSON
    rootfs_reference.py walk DIR            # print the directory as JSON

Rules (the ones hull documents): names are split on '/', empty and '.' parts are
dropped, '..' is refused; symlinks met on the way to an entry's parent are followed
inside the image root; missing parents become 0755 root:root directories with mtime
0; '.wh.NAME' hides NAME of lower layers, '.wh..wh..opq' hides all lower-layer
contents of its directory; a directory over a directory keeps the children; hard
links share the inode of their target.
"""
import hashlib
import json
import os
import stat
import subprocess
import sys
import tarfile

WH = ".wh."
OPQ = ".wh..wh..opq"


class Node:
    def __init__(self, kind, meta, layer, **extra):
        self.kind = kind
        self.meta = meta
        self.born = layer
        self.children = {} if kind == "dir" else None
        self.extra = extra


class Dentry:
    def __init__(self, node, layer):
        self.node = node
        self.layer = layer


class Model:
    def __init__(self):
        self.root = Node("dir", implicit_meta(), 0)
        self.layer = 0

    def parts(self, name):
        out = []
        for p in name.split("/"):
            if p in ("", "."):
                continue
            if p == "..":
                raise ValueError("traversal: " + name)
            out.append(p)
        return out

    def resolve(self, parts, create):
        stack = [self.root]
        pending = list(reversed(parts))
        follows = 0
        while pending:
            p = pending.pop()
            if p in ("", "."):
                continue
            if p == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            d = stack[-1].children.get(p)
            if d is None:
                if not create:
                    return None
                n = Node("dir", implicit_meta(), self.layer)
                stack[-1].children[p] = Dentry(n, self.layer)
                stack.append(n)
            elif d.node.kind == "dir":
                if create:
                    d.layer = self.layer
                stack.append(d.node)
            elif d.node.kind == "symlink":
                follows += 1
                if follows > 40:
                    raise ValueError("symlink loop")
                target = d.node.extra["target"]
                if target.startswith("/"):
                    del stack[1:]
                pending.extend(reversed(target.split("/")))
            else:
                raise ValueError("not a directory: " + p)
        return stack[-1]

    def opaque(self, d):
        work = [d]
        while work:
            n = work.pop()
            if n.born == self.layer:
                continue
            n.children = {k: v for k, v in n.children.items() if v.layer == self.layer}
            work.extend(v.node for v in n.children.values() if v.node.kind == "dir")

    def apply(self, tf):
        for m in tf:
            self.apply_member(tf, m)

    def apply_member(self, tf, m):
        parts = self.parts(m.name)
        if not parts:
            if not m.isdir():
                raise ValueError("root not a directory")
            self.root.meta = meta_of(m)
            return
        *parents, leaf = parts
        parent = self.resolve(parents, True)
        if leaf == OPQ:
            self.opaque(parent)
            return
        if leaf.startswith(WH):
            hidden = leaf[len(WH):]
            d = parent.children.get(hidden)
            if d is not None and d.layer < self.layer:
                del parent.children[hidden]
            return
        self.place(tf, m, parent, leaf)

    def place(self, tf, m, parent, leaf):
        old = parent.children.get(leaf)
        if m.isdir():
            if old is not None and old.node.kind == "dir":
                old.node.meta = meta_of(m)
                old.layer = self.layer
                return
            node = Node("dir", meta_of(m), self.layer)
        elif m.islnk():
            tparts = self.parts(m.linkname)
            tdir = self.resolve(tparts[:-1], False)
            target = tdir.children[tparts[-1]].node
            parent.children[leaf] = Dentry(target, self.layer)
            return
        elif m.issym():
            node = Node("symlink", meta_of(m), self.layer, target=m.linkname)
        elif m.ischr() or m.isblk():
            kind = "chr" if m.ischr() else "blk"
            node = Node(kind, meta_of(m), self.layer, rdev=[m.devmajor, m.devminor])
        elif m.isfifo():
            node = Node("fifo", meta_of(m), self.layer)
        else:
            h = hashlib.sha256()
            f = tf.extractfile(m)
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
            node = Node("file", meta_of(m), self.layer, size=m.size, sha256=h.hexdigest())
        parent.children[leaf] = Dentry(node, self.layer)

    def manifest(self):
        entries, groups = {}, {}
        stack = [("", self.root)]
        while stack:
            path, node = stack.pop()
            entries[path] = describe_node(node)
            if node.kind == "dir":
                for name, d in node.children.items():
                    stack.append((path + "/" + name, d.node))
            else:
                groups.setdefault(id(node), []).append(path)
        return entries, link_groups(groups.values())


def implicit_meta():
    return {"mode": 0o755, "uid": 0, "gid": 0, "mtime": 0, "xattrs": {}}


def meta_of(m):
    xattrs = {}
    for k, v in m.pax_headers.items():
        if k.startswith("SCHILY.xattr."):
            xattrs[k[len("SCHILY.xattr."):]] = v.encode("utf-8", "surrogateescape").hex()
    return {"mode": m.mode & 0o7777, "uid": m.uid, "gid": m.gid, "mtime": int(m.mtime), "xattrs": xattrs}


def describe_node(node):
    d = {"type": node.kind}
    d.update(node.meta)
    if node.kind == "symlink":
        d["target"] = node.extra["target"]
    elif node.kind in ("chr", "blk"):
        d["rdev"] = node.extra["rdev"]
    elif node.kind == "file":
        d["size"] = node.extra["size"]
        d["sha256"] = node.extra["sha256"]
    return d


def link_groups(groups):
    return sorted(sorted(g) for g in groups if len(g) > 1)


def open_layer(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\x28\xb5\x2f\xfd":
        data = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout
        import io
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    return tarfile.open(path, mode="r:*")


def model(layers):
    mdl = Model()
    for i, layer in enumerate(layers, start=1):
        mdl.layer = i
        with open_layer(layer) as tf:
            mdl.apply(tf)
    return mdl.manifest()


KINDS = {
    stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "chr", stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket",
}


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def describe_path(full, st):
    kind = KINDS[stat.S_IFMT(st.st_mode)]
    try:
        names = os.listxattr(full, follow_symlinks=False)
    except OSError:
        names = []
    xattrs = {n: os.getxattr(full, n, follow_symlinks=False).hex() for n in names}
    d = {"type": kind, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
         "mtime": int(st.st_mtime), "xattrs": xattrs}
    if kind == "symlink":
        d["target"] = os.readlink(full)
    elif kind in ("chr", "blk"):
        d["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    elif kind == "file":
        d["size"] = st.st_size
        d["sha256"] = file_sha256(full)
    return d


def walk(top):
    entries, groups = {}, {}
    stack = [""]
    while stack:
        rel = stack.pop()
        full = top + rel if rel else top
        st = os.lstat(full)
        entries[rel] = describe_path(full, st)
        if stat.S_ISDIR(st.st_mode):
            for name in os.listdir(full):
                stack.append(rel + "/" + name)
        else:
            groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
    return entries, link_groups(groups.values())


def differences(expected, actual, ignore):
    (e_entries, e_groups), (a_entries, a_groups) = expected, actual
    out = []
    for path in sorted(set(e_entries) | set(a_entries)):
        e, a = e_entries.get(path), a_entries.get(path)
        if e is None or a is None:
            out.append(f"{path or '/'}: {'missing from image' if a is None else 'not in layers'}")
            continue
        for key in sorted(set(e) | set(a)):
            if key in ignore:
                continue
            if e.get(key) != a.get(key):
                out.append(f"{path or '/'}: {key}: layers {e.get(key)!r}, image {a.get(key)!r}")
    if e_groups != a_groups:
        out.append(f"hard-link groups differ: layers {e_groups!r}, image {a_groups!r}")
    return out


def main(argv):
    if len(argv) >= 2 and argv[0] == "model":
        entries, groups = model(argv[1:])
        json.dump({"entries": entries, "links": groups}, sys.stdout, indent=1, sort_keys=True)
        return 0
    if len(argv) == 2 and argv[0] == "walk":
        entries, groups = walk(argv[1])
        json.dump({"entries": entries, "links": groups}, sys.stdout, indent=1, sort_keys=True)
        return 0
    if argv and argv[0] == "compare":
        args = argv[1:]
        ignore = set()
        while args and args[0].startswith("--no-"):
            ignore.add(args.pop(0)[len("--no-"):].rstrip("s"))
        ignore = {"xattrs" if i == "xattr" else i for i in ignore}
        if len(args) < 2:
            print(__doc__, file=sys.stderr)
            return 2
        actual = walk(args[0])
        diffs = differences(model(args[1:]), actual, ignore)
        for line in diffs[:50]:
            print(line)
        if diffs:
            print(f"{len(diffs)} differences", file=sys.stderr)
            return 1
        print(f"identical: {len(actual[0])} entries")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
