//! index.json: the layout's list of images. Written whole, atomically, under the
//! index lock; read strictly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{fs, io_err, ImageStore, Result, StoreError, REF_NAME, REPO_DIGEST};
use crate::image::digest::Digest;
use crate::image::manifest::{Blob, MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::image::reference::Reference;

/// One entry of index.json: a tag (or none, for a dangling image) and its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The full normalised reference, as stored in the ref.name annotation.
    pub name: Option<String>,
    pub manifest: Blob,
    /// The digest the image was pulled by, where it came from a registry.
    pub repo_digest: Option<Digest>,
}

impl ImageRecord {
    pub fn reference(&self) -> Option<Reference> {
        Reference::parse(self.name.as_deref()?).ok()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexFile {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

pub(super) fn read(store: &ImageStore) -> Result<Vec<ImageRecord>> {
    let path = store.index_path();
    let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
    if bytes.len() as u64 > 16 * MAX_MANIFEST_BYTES {
        return Err(StoreError::CorruptIndex {
            path,
            reason: "file is too large".into(),
        });
    }
    let file: IndexFile = serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptIndex {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    file.manifests
        .into_iter()
        .map(|e| {
            let repo_digest = match e.annotations.get(REPO_DIGEST) {
                Some(d) => Some(Digest::parse(d).map_err(|err| StoreError::CorruptIndex {
                    path: path.clone(),
                    reason: err.to_string(),
                })?),
                None => None,
            };
            Ok(ImageRecord {
                name: e.annotations.get(REF_NAME).cloned(),
                manifest: Blob {
                    media_type: e.media_type,
                    digest: e.digest,
                    size: e.size,
                },
                repo_digest,
            })
        })
        .collect()
}

pub(super) fn write(store: &ImageStore, records: &[ImageRecord]) -> Result<()> {
    let manifests = records
        .iter()
        .map(|r| {
            let mut annotations = BTreeMap::new();
            if let Some(name) = &r.name {
                annotations.insert(REF_NAME.to_owned(), name.clone());
            }
            if let Some(d) = &r.repo_digest {
                annotations.insert(REPO_DIGEST.to_owned(), d.to_string());
            }
            Entry {
                media_type: r.manifest.media_type.clone(),
                digest: r.manifest.digest.clone(),
                size: r.manifest.size,
                annotations,
            }
        })
        .collect();
    let file = IndexFile {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_owned()),
        manifests,
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("index serialises");
    let path = store.index_path();
    fs::write_atomic(&store.tmp_dir(), &path, &bytes).map_err(io_err("write", &path))
}
