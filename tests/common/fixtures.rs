//! Test images, built by `tests/fixtures/mkimage.py` into OCI image layouts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::process::{fixture, run_ok, PYTHON};

/// The tag every built layout carries in its index.json.
pub const TAG: &str = "test";

/// The kinds of image `mkimage.py` builds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Three gzip layers: hard links, a symlink, a whiteout, an opaque directory.
    Busybox,
    /// An index: linux/amd64 (the busybox image) and linux/arm64/v8.
    MultiArch,
    /// An index: linux/ppc64le and linux/s390x only.
    Foreign,
    /// A gzip layer and a zstd layer.
    Zstd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Busybox => "busybox",
            Kind::MultiArch => "multiarch",
            Kind::Foreign => "foreign",
            Kind::Zstd => "zstd",
        }
    }
}

/// One image manifest as the builder made it.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: String,
    pub config: String,
    pub layers: Vec<String>,
    pub layer_sizes: Vec<u64>,
    pub layer_media_types: Vec<String>,
    pub diff_ids: Vec<String>,
    /// Number of history entries, empty layers included.
    pub history: usize,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A built OCI layout and what is in it.
#[derive(Clone, Debug)]
pub struct Image {
    pub layout: PathBuf,
    /// Digest of the top-level document (index or manifest).
    pub digest: String,
    /// The image manifests: one, or one per platform of an index.
    pub manifests: Vec<Manifest>,
}

impl Image {
    pub fn build(parent: &Path, kind: Kind) -> Image {
        Image::build_tagged(parent, kind, TAG)
    }

    /// Builds with `tag` as the layout's ref.name annotation (a full reference is fine).
    pub fn build_tagged(parent: &Path, kind: Kind, tag: &str) -> Image {
        let layout = parent.join(format!("layout-{}", kind.name()));
        let mut cmd = Command::new(PYTHON);
        cmd.arg(fixture("mkimage.py")).arg(&layout).arg(tag).arg(kind.name());
        let summary: Value = serde_json::from_str(&run_ok(cmd)).expect("mkimage summary");
        let manifests = match summary.get("images") {
            Some(images) => images.as_array().unwrap().iter().map(manifest).collect(),
            None => vec![manifest(&summary)],
        };
        let digest = summary["digest"].as_str().unwrap().to_string();
        Image {
            layout,
            digest,
            manifests,
        }
    }

    /// The single manifest, or the one for `arch`.
    pub fn manifest(&self, arch: &str) -> &Manifest {
        self.manifests
            .iter()
            .find(|m| m.architecture == arch)
            .unwrap_or_else(|| panic!("no {arch} manifest in {:?}", self.layout))
    }

    /// Raw bytes of a blob of the layout.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        fs::read(self.layout.join("blobs/sha256").join(hex)).expect("read layout blob")
    }

    /// Every blob a pull of `m` downloads: config and layers.
    pub fn blobs_of(m: &Manifest) -> Vec<String> {
        let mut all = vec![m.config.clone()];
        all.extend(m.layers.iter().cloned());
        all
    }
}

fn manifest(v: &Value) -> Manifest {
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    Manifest {
        digest: v["manifest"].as_str().unwrap().to_string(),
        config: v["config"].as_str().unwrap().to_string(),
        layers: strings("layers"),
        layer_sizes: v["layer_sizes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect(),
        layer_media_types: strings("layer_media_types"),
        diff_ids: strings("diff_ids"),
        history: v["history"].as_u64().unwrap() as usize,
        architecture: v["platform"]["architecture"].as_str().unwrap().to_string(),
        variant: v["platform"]["variant"].as_str().map(str::to_string),
    }
}

/// The host's architecture as OCI spells it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Hex of a sha256 digest.
pub fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("sha256 digest")
}

/// The Docker short image id: 12 hex digits of the config digest.
pub fn short_id(config_digest: &str) -> &str {
    &hex(config_digest)[..12]
}

/// `sha256:` digest of some bytes.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}
