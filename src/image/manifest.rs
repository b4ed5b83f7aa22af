//! Manifests and indexes from registries and archives: bounded, strictly typed,
//! converted from oci-spec's types into the small structs hull works with.

use oci_spec::image::{ImageIndex, ImageManifest};
use serde_json::Value;

use super::digest::{Digest, DigestError};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Every manifest type hull asks registries for.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Largest manifest or index accepted (as Docker's limit).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config accepted.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest blob a descriptor may declare (1 PiB): beyond it a size is nonsense.
pub const MAX_BLOB_BYTES: u64 = 1 << 50;
/// Most layers in one image.
pub const MAX_LAYERS: usize = 500;
/// Most entries in one index.
pub const MAX_INDEX_ENTRIES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size} bytes, more than the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { size: u64 },
    #[error("manifest is not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("unsupported manifest: schema version 1 (Docker image format v1) is deprecated and not supported")]
    Schema1,
    #[error("unsupported manifest schema version {0}")]
    SchemaVersion(i64),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("registry declared {header} but the document is {document}")]
    ContentTypeMismatch { header: String, document: String },
    #[error("ambiguous document: it has both 'manifests' and 'layers'/'config'")]
    Ambiguous,
    #[error("document of type {media_type} does not match its content")]
    Shape {
        media_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported layer media type {0:?}")]
    LayerMediaType(String),
    #[error("unsupported config media type {0:?}")]
    ConfigMediaType(String),
    #[error("manifest has {0} layers, more than the limit of {MAX_LAYERS}")]
    TooManyLayers(usize),
    #[error("index has {0} entries, more than the limit of {MAX_INDEX_ENTRIES}")]
    TooManyEntries(usize),
    #[error("descriptor declares {0} bytes, more than any blob hull accepts")]
    Size(u64),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A content descriptor with a validated digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A layer of an image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub blob: Blob,
    pub compression: Compression,
}

/// An image manifest reduced to what hull uses.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    pub config: Blob,
    pub layers: Vec<Layer>,
}

/// One platform's entry in an index.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    pub blob: Blob,
    pub platform: Option<Platform>,
}

/// `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub enum Document {
    Manifest(Manifest),
    Index {
        media_type: String,
        entries: Vec<IndexEntry>,
    },
}

/// Parses a manifest or an index. `content_type` is the HTTP header, used only when the
/// document itself names no media type.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Document, ManifestError> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    match value.get("schemaVersion").and_then(Value::as_i64) {
        Some(2) => {}
        Some(1) => return Err(ManifestError::Schema1),
        Some(v) => return Err(ManifestError::SchemaVersion(v)),
        None => return Err(ManifestError::SchemaVersion(0)),
    }
    let has_index_fields = value.get("manifests").is_some();
    let has_manifest_fields = value.get("layers").is_some() || value.get("config").is_some();
    if has_index_fields && has_manifest_fields {
        return Err(ManifestError::Ambiguous);
    }
    let inferred = match (has_index_fields, has_manifest_fields) {
        (true, _) => Some(OCI_INDEX),
        (_, true) => Some(OCI_MANIFEST),
        _ => None,
    };
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|m| !m.is_empty() && *m != "application/json" && *m != "application/octet-stream");
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .or(inferred)
        .or(header)
        .unwrap_or(OCI_MANIFEST)
        .to_owned();
    if let Some(header) = header {
        if kind(header).is_some_and(|k| Some(k) != kind(&media_type)) {
            return Err(ManifestError::ContentTypeMismatch {
                header: header.to_owned(),
                document: media_type,
            });
        }
    }
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST if !has_index_fields => parse_manifest(value, media_type),
        OCI_INDEX | DOCKER_LIST if !has_manifest_fields => parse_index(value, media_type),
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ManifestError::Schema1),
        _ => Err(ManifestError::MediaType(media_type)),
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Manifest,
    Index,
}

fn kind(media_type: &str) -> Option<Kind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(Kind::Manifest),
        OCI_INDEX | DOCKER_LIST => Some(Kind::Index),
        _ => None,
    }
}

fn parse_manifest(value: Value, media_type: String) -> Result<Document, ManifestError> {
    let raw: ImageManifest = serde_json::from_value(value).map_err(|source| ManifestError::Shape {
        media_type: media_type.clone(),
        source,
    })?;
    if raw.layers().len() > MAX_LAYERS {
        return Err(ManifestError::TooManyLayers(raw.layers().len()));
    }
    let config = blob(raw.config())?;
    if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
        return Err(ManifestError::ConfigMediaType(config.media_type));
    }
    let layers = raw
        .layers()
        .iter()
        .map(|d| {
            let blob = blob(d)?;
            let compression = layer_compression(&blob.media_type)?;
            Ok(Layer { blob, compression })
        })
        .collect::<Result<_, ManifestError>>()?;
    Ok(Document::Manifest(Manifest {
        media_type,
        config,
        layers,
    }))
}

fn parse_index(value: Value, media_type: String) -> Result<Document, ManifestError> {
    let raw: ImageIndex = serde_json::from_value(value).map_err(|source| ManifestError::Shape {
        media_type: media_type.clone(),
        source,
    })?;
    if raw.manifests().len() > MAX_INDEX_ENTRIES {
        return Err(ManifestError::TooManyEntries(raw.manifests().len()));
    }
    let entries = raw
        .manifests()
        .iter()
        .map(|d| {
            let platform = d.platform().as_ref().map(|p| Platform {
                os: p.os().to_string(),
                architecture: p.architecture().to_string(),
                variant: p.variant().clone(),
            });
            Ok(IndexEntry {
                blob: blob(d)?,
                platform,
            })
        })
        .collect::<Result<_, ManifestError>>()?;
    Ok(Document::Index { media_type, entries })
}

fn blob(d: &oci_spec::image::Descriptor) -> Result<Blob, ManifestError> {
    let size = d.size();
    if size > MAX_BLOB_BYTES {
        return Err(ManifestError::Size(size));
    }
    Ok(Blob {
        media_type: d.media_type().to_string(),
        digest: Digest::parse(d.digest().as_ref())?,
        size,
    })
}

/// Rewrites a Docker schema 2 manifest as an OCI manifest naming the same blobs, so
/// that OCI tools reading the store (`skopeo inspect oci:`) see every image. Returns
/// the new manifest and its bytes.
pub fn to_oci(m: &Manifest) -> (Manifest, Vec<u8>) {
    let layer_type = |c: Compression| match c {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    };
    let converted = Manifest {
        media_type: OCI_MANIFEST.to_owned(),
        config: Blob {
            media_type: OCI_CONFIG.to_owned(),
            ..m.config.clone()
        },
        layers: m
            .layers
            .iter()
            .map(|l| Layer {
                blob: Blob {
                    media_type: layer_type(l.compression).to_owned(),
                    ..l.blob.clone()
                },
                compression: l.compression,
            })
            .collect(),
    };
    let descriptor =
        |b: &Blob| serde_json::json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size});
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(&converted.config),
        "layers": converted.layers.iter().map(|l| descriptor(&l.blob)).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&doc).expect("manifest serialises");
    (converted, bytes)
}

/// The compression a layer media type implies; other types are refused.
pub fn layer_compression(media_type: &str) -> Result<Compression, ManifestError> {
    match media_type {
        OCI_LAYER_TAR
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
        OCI_LAYER_GZIP
        | DOCKER_LAYER_GZIP
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Compression::Zstd),
        other => Err(ManifestError::LayerMediaType(other.to_owned())),
    }
}

impl Platform {
    /// The platform of this host.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Option<Platform> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_lowercase();
        let architecture = parts.next().filter(|p| !p.is_empty())?.to_lowercase();
        let variant = parts.next().map(str::to_lowercase);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Whether an index entry's platform satisfies this requested one.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let variant_ok = match (&self.variant, &candidate.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        };
        self.os == candidate.os && self.architecture == candidate.architecture && variant_ok
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the entry for `want`; on failure returns the platforms the index offers.
pub fn select_platform<'a>(entries: &'a [IndexEntry], want: &Platform) -> Result<&'a IndexEntry, Vec<String>> {
    entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| want.matches(p)))
        .ok_or_else(|| {
            entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(Platform::to_string)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest_json(layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":2}},"layers":[{{"mediaType":"{layer_type}","digest":"{D}","size":10}}]}}"#
        )
    }

    #[test]
    fn parses_oci_manifest_with_zstd_layer() {
        let Document::Manifest(m) = parse(manifest_json(OCI_LAYER_ZSTD).as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(m.layers[0].compression, Compression::Zstd);
        assert_eq!(m.config.size, 2);
    }

    #[test]
    fn docker_manifest_converts_to_an_oci_manifest_of_the_same_blobs() {
        let docker = manifest_json(DOCKER_LAYER_GZIP)
            .replace(OCI_MANIFEST, DOCKER_MANIFEST)
            .replace(OCI_CONFIG, DOCKER_CONFIG);
        let Document::Manifest(m) = parse(docker.as_bytes(), None).unwrap() else {
            panic!()
        };
        let (oci, bytes) = to_oci(&m);
        let Document::Manifest(again) = parse(&bytes, None).unwrap() else {
            panic!()
        };
        assert_eq!(again.media_type, OCI_MANIFEST);
        assert_eq!(again.config.media_type, OCI_CONFIG);
        assert_eq!(again.layers[0].blob.media_type, OCI_LAYER_GZIP);
        assert_eq!(again.layers[0].blob.digest, m.layers[0].blob.digest);
        assert_eq!(oci.layers, again.layers);
    }

    #[test]
    fn rejects_unknown_layer_media_type() {
        let err = parse(manifest_json("application/x-bogus").as_bytes(), None).unwrap_err();
        assert!(matches!(err, ManifestError::LayerMediaType(_)));
    }

    #[test]
    fn rejects_schema1() {
        let doc = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(parse(doc.as_bytes(), None), Err(ManifestError::Schema1)));
        let doc = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#;
        assert!(matches!(parse(doc.as_bytes(), None), Err(ManifestError::Schema1)));
    }

    #[test]
    fn rejects_ambiguous_document() {
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[],"config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":2}},"layers":[]}}"#
        );
        assert!(matches!(parse(doc.as_bytes(), None), Err(ManifestError::Ambiguous)));
    }

    #[test]
    fn rejects_oversized_manifest_before_parsing() {
        let big = vec![b' '; (MAX_MANIFEST_BYTES + 1) as usize];
        assert!(matches!(parse(&big, None), Err(ManifestError::TooLarge { .. })));
    }

    #[test]
    fn rejects_malformed_digest_in_descriptor() {
        let doc = manifest_json(OCI_LAYER_GZIP).replacen(D, "sha256:../../x", 2);
        assert!(parse(doc.as_bytes(), None).is_err());
    }

    #[test]
    fn rejects_index_served_with_a_manifest_content_type() {
        let doc = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse(doc.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::ContentTypeMismatch { .. })
        ));
        let doc = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse(doc.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::ContentTypeMismatch { .. })
        ));
        assert!(parse(doc.as_bytes(), Some(OCI_INDEX)).is_ok());
    }

    #[test]
    fn unknown_v1_media_type_is_not_taken_for_schema1() {
        let doc = r#"{"schemaVersion":2,"mediaType":"application/vnd.example.unknown.manifest.v1+json"}"#;
        assert!(matches!(parse(doc.as_bytes(), None), Err(ManifestError::MediaType(_))));
    }

    #[test]
    fn rejects_unknown_media_type() {
        let doc = r#"{"schemaVersion":2,"mediaType":"application/vnd.example.thing"}"#;
        assert!(matches!(parse(doc.as_bytes(), None), Err(ManifestError::MediaType(_))));
    }

    #[test]
    fn deeply_nested_json_is_an_error_not_a_crash() {
        let doc = format!(
            r#"{{"schemaVersion":2,"x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse(doc.as_bytes(), None).is_err());
    }

    #[test]
    fn platform_selection_lists_alternatives() {
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"s390x"}}}}]}}"#
        );
        let Document::Index { entries, .. } = parse(doc.as_bytes(), None).unwrap() else {
            panic!()
        };
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert_eq!(
            select_platform(&entries, &amd64).unwrap_err(),
            vec!["linux/arm64/v8", "linux/s390x"]
        );
        assert!(select_platform(&entries, &Platform::parse("linux/arm64").unwrap()).is_ok());
        assert!(select_platform(&entries, &Platform::parse("linux/arm64/v8").unwrap()).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse(&bytes, None);
        }
    }
}
