//! OCI image-layout archives: `oci-layout`, `index.json` and `blobs/sha256/*`.
//!
//! Each `index.json` entry is an image (or an index, resolved to the host platform).
//! Its name is the `io.containerd.image.name` annotation, else an
//! `org.opencontainers.image.ref.name` that is a full reference (it has a `/`, `:` or
//! `@`). A bare ref.name such as `latest` names no repository, so that image loads
//! untagged, as Docker does. Manifests are stored as they are, keeping their digests.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::load::{check_content, check_layer, diff_ids, parse_tag, PlannedImage};
use super::stage::Members;
use super::{blob_member, ArchiveError, Result, IMAGE_NAME};
use crate::image::digest::Digest;
use crate::image::manifest::{self, Blob, Document, Manifest, Platform};
use crate::image::reference::Reference;
use crate::image::store::REF_NAME;

const INDEX: &str = "index.json";
const LAYOUT: &str = "oci-layout";
/// Most indexes nested inside one another.
const MAX_DEPTH: usize = 4;

#[derive(Deserialize)]
struct RawIndex {
    #[serde(default)]
    manifests: Vec<RawEntry>,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

/// Verifies every image `index.json` lists; entries naming one manifest merge.
pub(super) fn plan(members: &Members) -> Result<Vec<PlannedImage>> {
    check_layout(members)?;
    let bytes = members.json(INDEX, "(archive)")?;
    let entries = match manifest::parse(bytes, None) {
        Ok(Document::Index { entries, .. }) => entries,
        Ok(Document::Manifest(_)) => return Err(not_an_index()),
        Err(source) => {
            return Err(ArchiveError::Manifest {
                member: INDEX.into(),
                image: "(archive)".into(),
                source,
            })
        }
    };
    let raw: RawIndex = serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
        member: INDEX.into(),
        source,
    })?;
    let mut images: Vec<PlannedImage> = Vec::new();
    for (entry, raw) in entries.iter().zip(&raw.manifests) {
        let tag = name_of(raw.annotations.as_ref(), &entry.blob.digest)?;
        let label = tag
            .as_ref()
            .map_or_else(|| entry.blob.digest.to_string(), Reference::familiar);
        let (blob, bytes, manifest) = resolve_manifest(members, &entry.blob, &label)?;
        match images.iter_mut().find(|i| i.manifest_digest() == blob.digest) {
            Some(image) => image.tags.extend(tag),
            None => images.push(plan_image(members, blob, bytes, manifest, tag, label)?),
        }
    }
    Ok(images)
}

fn not_an_index() -> ArchiveError {
    let source = manifest::ManifestError::MediaType("an image manifest where an index belongs".into());
    ArchiveError::Manifest {
        member: INDEX.into(),
        image: "(archive)".into(),
        source,
    }
}

fn check_layout(members: &Members) -> Result<()> {
    let bytes = members.json(LAYOUT, "(archive)")?;
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| ArchiveError::Json {
        member: LAYOUT.into(),
        source,
    })?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some("1.0.0") => Ok(()),
        other => Err(ArchiveError::LayoutVersion(other.unwrap_or("").to_owned())),
    }
}

/// The image name an index entry carries, if any (see the module comment).
fn name_of(annotations: Option<&BTreeMap<String, String>>, digest: &Digest) -> Result<Option<Reference>> {
    let Some(annotations) = annotations else {
        return Ok(None);
    };
    let full_ref = annotations.get(REF_NAME).filter(|n| n.contains(['/', ':', '@']));
    let Some(name) = annotations.get(IMAGE_NAME).or(full_ref) else {
        return Ok(None);
    };
    let reference = parse_tag(name, &digest.to_string())?;
    Ok(reference.tag().is_some().then_some(reference))
}

/// Follows an entry to a single-platform manifest, picking the host's platform in
/// indexes. Returns its descriptor, bytes and parsed form.
fn resolve_manifest(members: &Members, entry: &Blob, image: &str) -> Result<(Blob, Vec<u8>, Manifest)> {
    let mut blob = entry.clone();
    for _ in 0..MAX_DEPTH {
        let member = blob_member(&blob.digest);
        let bytes = members.json(&member, image)?;
        check_content(&member, image, &blob, &Digest::of(bytes), bytes.len() as u64)?;
        let parse_err = |source| ArchiveError::Manifest {
            member: member.clone(),
            image: image.to_owned(),
            source,
        };
        match manifest::parse(bytes, Some(&blob.media_type)).map_err(parse_err)? {
            Document::Manifest(m) => return Ok((blob, bytes.to_vec(), m)),
            Document::Index { entries, .. } => blob = pick_platform(&member, &entries)?,
        }
    }
    Err(ArchiveError::NestedIndex {
        member: blob_member(&entry.digest),
    })
}

fn pick_platform(member: &str, entries: &[manifest::IndexEntry]) -> Result<Blob> {
    let want = Platform::host();
    manifest::select_platform(entries, &want)
        .map(|e| e.blob.clone())
        .map_err(|available| ArchiveError::Platform {
            member: member.to_owned(),
            want: want.to_string(),
            available: available.join(", "),
        })
}

fn plan_image(
    members: &Members,
    blob: Blob,
    bytes: Vec<u8>,
    manifest: Manifest,
    tag: Option<Reference>,
    label: String,
) -> Result<PlannedImage> {
    let config_member = blob_member(&manifest.config.digest);
    let config = members.json(&config_member, &label)?.to_vec();
    check_content(
        &config_member,
        &label,
        &manifest.config,
        &Digest::of(&config),
        config.len() as u64,
    )?;
    let value: serde_json::Value = serde_json::from_slice(&config).map_err(|source| ArchiveError::Json {
        member: config_member,
        source,
    })?;
    let diff_ids = diff_ids(&value, &label)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ArchiveError::LayerCount {
            image: label,
            layers: manifest.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (layer, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let member = blob_member(&layer.blob.digest);
        let (compression, ..) = check_layer(members, &member, &label, Some(&layer.blob), diff_id)?;
        if compression != layer.compression {
            return Err(ArchiveError::Compression { member, image: label });
        }
        layers.push(member);
    }
    Ok(PlannedImage {
        label,
        tags: tag.into_iter().collect(),
        manifest: bytes,
        manifest_media_type: blob.media_type,
        config,
        layers,
    })
}
