//! `docker save` archives: `manifest.json` lists each image's config, tags and
//! uncompressed layer tars (`<id>/layer.tar` before Docker 25, `blobs/sha256/<hex>`
//! since). The manifest stored for each image is a new OCI manifest.

use serde::Deserialize;
use serde_json::json;

use super::load::{check_claimed, check_layer, diff_ids, layer_media_type, parse_tag, PlannedImage};
use super::member::normalise;
use super::stage::Members;
use super::{ArchiveError, Result};
use crate::image::digest::Digest;
use crate::image::manifest::{OCI_CONFIG, OCI_MANIFEST};
use crate::image::reference::Reference;

const MANIFEST: &str = "manifest.json";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Verifies every image `manifest.json` lists.
pub(super) fn plan(members: &Members) -> Result<Vec<PlannedImage>> {
    let bytes = members.json(MANIFEST, "(archive)")?;
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
        member: MANIFEST.into(),
        source,
    })?;
    entries.iter().map(|e| plan_image(members, e)).collect()
}

fn plan_image(members: &Members, entry: &Entry) -> Result<PlannedImage> {
    let repo_tags = entry.repo_tags.as_deref().unwrap_or_default();
    let label = repo_tags.first().cloned().unwrap_or_else(|| entry.config.clone());
    let mut tags = repo_tags
        .iter()
        .map(|t| parse_tag(t, &label))
        .collect::<Result<Vec<Reference>>>()?;
    tags.retain(|t| t.tag().is_some());
    let config_member = normalise(entry.config.as_bytes())?;
    let config = members.json(&config_member, &label)?.to_vec();
    check_claimed(&config_member, &label, &config)?;
    let value: serde_json::Value = serde_json::from_slice(&config).map_err(|source| ArchiveError::Json {
        member: config_member.clone(),
        source,
    })?;
    let diff_ids = diff_ids(&value, &label)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(ArchiveError::LayerCount {
            image: label,
            layers: entry.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut descriptors = Vec::with_capacity(diff_ids.len());
    for (path, diff_id) in entry.layers.iter().zip(&diff_ids) {
        let member = normalise(path.as_bytes())?;
        let (compression, digest, size) = check_layer(members, &member, &label, None, diff_id)?;
        descriptors.push(json!({ "mediaType": layer_media_type(compression), "digest": digest, "size": size }));
        layers.push(member);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": Digest::of(&config), "size": config.len() },
        "layers": descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).expect("a manifest of strings and numbers serialises");
    Ok(PlannedImage {
        label,
        tags,
        manifest,
        manifest_media_type: OCI_MANIFEST.into(),
        config,
        layers,
    })
}
