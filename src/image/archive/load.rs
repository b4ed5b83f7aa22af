//! `load`: an archive stream in, verified images in the store.
//!
//! The recipe: detect compression -> stage every member -> plan the images from the
//! metadata (docker `manifest.json` first, else OCI `index.json`), verifying every
//! digest and each referenced layer's diff_id -> publish the referenced blobs -> tag. A failure before the
//! publish step leaves the store as it was.

use std::fmt;
use std::io::{self, BufReader, Read};

use super::member::{claimed_digest, sniff};
use super::stage::Members;
use super::{docker, oci, ArchiveError, Result};
use crate::image::digest::Digest;
use crate::image::manifest::{Blob, Compression, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::image::reference::Reference;
use crate::image::store::{ImageStore, StoreError};

/// What a load added, printed as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Tagged(Reference),
    /// An image without a tag, by its id (config digest).
    Untagged(Digest),
}

impl fmt::Display for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loaded::Tagged(r) => write!(f, "Loaded image: {}", r.familiar()),
            Loaded::Untagged(d) => write!(f, "Loaded image ID: {d}"),
        }
    }
}

/// An image read from the archive and verified, ready to publish.
pub(super) struct PlannedImage {
    /// How errors name the image: its first tag, else its manifest or config.
    pub label: String,
    pub tags: Vec<Reference>,
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub config: Vec<u8>,
    /// Archive members holding the layers, in order.
    pub layers: Vec<String>,
}

impl PlannedImage {
    pub fn manifest_digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

/// Loads every image of a `docker save` or OCI-layout archive (plain, gzip or zstd).
pub fn load(store: &ImageStore, reader: impl Read + 'static) -> Result<Vec<Loaded>> {
    raise_open_file_limit();
    let _pin = store.pin()?;
    let input = decompressed(reader)?;
    let mut members = Members::read(store, input)?;
    let images = plan(&members)?;
    let mut loaded = Vec::new();
    for image in &images {
        loaded.extend(publish(store, &mut members, image)?);
    }
    Ok(loaded)
}

fn plan(members: &Members) -> Result<Vec<PlannedImage>> {
    if members.has("manifest.json") {
        docker::plan(members)
    } else if members.has("index.json") {
        oci::plan(members)
    } else {
        Err(ArchiveError::UnknownFormat)
    }
}

/// Peeks at the first bytes and undoes gzip or zstd compression of the whole archive.
fn decompressed(reader: impl Read + 'static) -> Result<Box<dyn Read>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let mut head = Vec::with_capacity(4);
    Read::take(&mut reader, 4)
        .read_to_end(&mut head)
        .map_err(|source| ArchiveError::Stream {
            after: "(start of archive)".into(),
            source,
        })?;
    let input = io::Cursor::new(head.clone()).chain(reader);
    Ok(match sniff(&head) {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::read::MultiGzDecoder::new(input),
        )),
        Compression::Zstd => {
            Box::new(
                zstd::stream::read::Decoder::new(input).map_err(|source| ArchiveError::Stream {
                    after: "(start of archive)".into(),
                    source,
                })?,
            )
        }
    })
}

fn publish(store: &ImageStore, members: &mut Members, image: &PlannedImage) -> Result<Vec<Loaded>> {
    let err = |source: StoreError| ArchiveError::Store {
        image: image.label.clone(),
        source,
    };
    for layer in &image.layers {
        members.publish(store, layer).map_err(err)?;
    }
    let config_digest = store.put_blob(&image.config).map_err(err)?;
    let digest = store.put_blob(&image.manifest).map_err(err)?;
    let blob = Blob {
        media_type: image.manifest_media_type.clone(),
        digest,
        size: image.manifest.len() as u64,
    };
    if image.tags.is_empty() {
        store.add_untagged(&blob).map_err(err)?;
        return Ok(vec![Loaded::Untagged(config_digest)]);
    }
    for tag in &image.tags {
        store.tag(tag, &blob, None).map_err(err)?;
    }
    Ok(image.tags.iter().cloned().map(Loaded::Tagged).collect())
}

/// Checks a staged layer against its descriptor (where the archive has one) and its
/// diff_id; returns its compression, digest and size.
pub(super) fn check_layer(
    members: &Members,
    member: &str,
    image: &str,
    descriptor: Option<&Blob>,
    diff_id: &Digest,
) -> Result<(Compression, Digest, u64)> {
    let staged = members.staged(member, image)?;
    if let Some(blob) = descriptor {
        check_content(member, image, blob, &staged.digest, staged.size)?;
    }
    let actual = staged.diff_id().map_err(|source| ArchiveError::Member {
        member: member.to_owned(),
        source,
    })?;
    if &actual != diff_id {
        return Err(ArchiveError::DiffId {
            member: member.to_owned(),
            image: image.to_owned(),
            expected: diff_id.clone(),
        });
    }
    Ok((staged.compression, staged.digest.clone(), staged.size))
}

/// Checks content against a descriptor's digest and size.
pub(super) fn check_content(member: &str, image: &str, blob: &Blob, actual: &Digest, size: u64) -> Result<()> {
    if actual != &blob.digest {
        return Err(ArchiveError::DigestMismatch {
            member: member.to_owned(),
            image: image.to_owned(),
            expected: blob.digest.clone(),
            actual: actual.clone(),
        });
    }
    if size != blob.size {
        return Err(ArchiveError::SizeMismatch {
            member: member.to_owned(),
            image: image.to_owned(),
            expected: blob.size,
            actual: size,
        });
    }
    Ok(())
}

/// Checks that content matches the digest its member name claims, if any.
pub(super) fn check_claimed(member: &str, image: &str, bytes: &[u8]) -> Result<()> {
    let Some(expected) = claimed_digest(member)? else {
        return Ok(());
    };
    let actual = Digest::of(bytes);
    if actual != expected {
        return Err(ArchiveError::DigestMismatch {
            member: member.to_owned(),
            image: image.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// The config's `rootfs.diff_ids`, each parsed as a digest.
pub(super) fn diff_ids(config: &serde_json::Value, image: &str) -> Result<Vec<Digest>> {
    let Some(ids) = config.pointer("/rootfs/diff_ids").and_then(|v| v.as_array()) else {
        return Ok(Vec::new());
    };
    ids.iter()
        .map(|v| {
            Digest::parse(v.as_str().unwrap_or("")).map_err(|source| ArchiveError::DiffIdFormat {
                image: image.to_owned(),
                source,
            })
        })
        .collect()
}

/// Parses a tag found in the archive.
pub(super) fn parse_tag(tag: &str, image: &str) -> Result<Reference> {
    Reference::parse(tag).map_err(|source| ArchiveError::Tag {
        image: image.to_owned(),
        tag: tag.to_owned(),
        source,
    })
}

/// The layer media type for a compression.
pub(super) fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => OCI_LAYER_TAR,
        Compression::Gzip => OCI_LAYER_GZIP,
        Compression::Zstd => OCI_LAYER_ZSTD,
    }
}

/// Staged members each hold an open, locked temp file; lift the soft limit on open
/// files to the hard one so archives of many layers fit.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= limit.rlim_max {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads only the struct it is given; failure leaves the limit as it was.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}
