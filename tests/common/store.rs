//! Reading hull's store (an OCI image layout) from the outside, as skopeo would.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::fixtures::sha256;
use super::process::run_ok;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Names of the blobs under `blobs/sha256/`, temp files (dot-prefixed) left out.
pub fn blob_names(root: &Path) -> Vec<String> {
    let Ok(dir) = fs::read_dir(root.join("blobs/sha256")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .map(|e| e.expect("read blobs dir").file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// Files left in the store's `tmp/` (downloads in flight, or abandoned by a crash).
pub fn temp_files(root: &Path) -> Vec<String> {
    tree(&root.join("tmp"))
}

/// Names in the directory `dir` of the store, sorted; none when it does not exist.
fn names_in(root: &Path, dir: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root.join(dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("read store dir").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// The files under `rootfs/`: flattened root disks and any leftovers (the build
/// locks left out).
pub fn rootfs_files(root: &Path) -> Vec<String> {
    let mut names = names_in(root, "rootfs");
    names.retain(|n| !n.ends_with(".lock"));
    names
}

/// The directories under `containers/`: one per recorded container (the store's
/// dot-files left out).
pub fn container_dirs(root: &Path) -> Vec<String> {
    let mut names = names_in(root, "containers");
    names.retain(|n| !n.starts_with('.'));
    names
}

pub fn has_blob(root: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    root.join("blobs/sha256").join(hex).is_file()
}

/// The store's index.json, or None when there is none yet.
pub fn index(root: &Path) -> Option<Value> {
    let text = fs::read_to_string(root.join("index.json")).ok()?;
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("index.json is not JSON: {e}\n{text}")))
}

/// `org.opencontainers.image.ref.name` of every index.json entry.
pub fn ref_names(root: &Path) -> Vec<String> {
    let Some(index) = index(root) else { return Vec::new() };
    index["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .filter_map(|m| m["annotations"][REF_NAME].as_str().map(str::to_string))
        .collect()
}

/// The index.json entry named `reference`.
pub fn entry(root: &Path, reference: &str) -> Option<Value> {
    let index = index(root)?;
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"][REF_NAME] == reference)
        .cloned()
}

/// Every blob has the content its name promises, no blob file is left half-written,
/// and everything index.json points at is present. Panics naming what is wrong.
pub fn assert_consistent(root: &Path) {
    for name in blob_names(root) {
        assert!(
            name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "a file under blobs/sha256 is not named by a digest: {name}"
        );
        let data = fs::read(root.join("blobs/sha256").join(&name)).expect("read blob");
        assert_eq!(
            sha256(&data),
            format!("sha256:{name}"),
            "blob {name} does not match its name"
        );
    }
    let Some(index) = index(root) else { return };
    for m in index["manifests"].as_array().expect("index.json has manifests") {
        assert_document_complete(root, m, 0);
    }
}

fn assert_document_complete(root: &Path, descriptor: &Value, depth: usize) {
    assert!(depth < 8, "index nesting too deep in the store");
    let digest = descriptor["digest"].as_str().expect("descriptor digest");
    assert!(has_blob(root, digest), "index.json names {digest}, which is not stored");
    let hex = digest.strip_prefix("sha256:").unwrap();
    let doc: Value = serde_json::from_slice(&fs::read(root.join("blobs/sha256").join(hex)).unwrap())
        .unwrap_or_else(|e| panic!("stored document {digest} is not JSON: {e}"));
    if let Some(children) = doc["manifests"].as_array() {
        // An index may keep only the platforms that were pulled; at least one is whole.
        let present: Vec<&Value> = children
            .iter()
            .filter(|c| has_blob(root, c["digest"].as_str().unwrap()))
            .collect();
        assert!(!present.is_empty(), "stored index {digest} has none of its manifests");
        for child in present {
            assert_document_complete(root, child, depth + 1);
        }
    } else {
        let config = doc["config"]["digest"].as_str().expect("manifest config digest");
        assert!(has_blob(root, config), "config {config} of {digest} is not stored");
        for layer in doc["layers"].as_array().expect("manifest layers") {
            let layer = layer["digest"].as_str().unwrap();
            assert!(has_blob(root, layer), "layer {layer} of {digest} is not stored");
        }
    }
}

/// `skopeo inspect oci:ROOT:REF` (`--raw` or `--config` in `extra`), parsed.
pub fn skopeo_inspect(root: &Path, reference: &str, extra: &[&str]) -> Value {
    let mut cmd = Command::new("skopeo");
    cmd.arg("inspect")
        .args(extra)
        .arg(format!("oci:{}:{reference}", root.display()));
    serde_json::from_str(&run_ok(cmd)).expect("skopeo inspect prints JSON")
}

/// Paths under `dir` (recursively), relative, sorted: to compare before and after.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries {
            let path = e.expect("dir entry").path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}
