//! What `rmi`, `image prune` and `system prune` share: which images and root disks
//! containers use, and the removal of blobs and root disks nothing needs any more.
//!
//! Callers hold the garbage collector's lock ([`ImageStore::lock_gc`]) from reading
//! the containers' usage to the last removal: creates, pulls, loads, commits and
//! imports hold it shared, so no container starts using an image in between.
//! References go before what they point to (index entries, then blobs, then root
//! disks), so a kill at any point leaves only leftovers the next prune removes. When
//! in doubt (a container record or a manifest that cannot be read) nothing is
//! removed, with a warning.

use std::collections::HashSet;

use hull::container::usage::Usage;
use hull::container::ContainerStore;
use hull::image::digest::Digest;
use hull::image::reference::Reference;
use hull::image::store::{GcLock, ImageRecord, ImageStore, StoreError};

/// What pruning images removed.
#[derive(Debug, Default)]
pub struct PrunedImages {
    pub untagged: Vec<Reference>,
    /// Manifest digests of the images that are gone.
    pub deleted: Vec<Digest>,
    /// Blobs and root disks freed.
    pub bytes: u64,
}

fn warn(what: &str) {
    eprintln!("hull: warning: {what}");
}

/// What every container uses, with a warning naming the records that cannot be read.
pub fn usage(store: &ImageStore) -> anyhow::Result<Usage> {
    let usage = ContainerStore::open(store.root())?.usage()?;
    for id in &usage.unreadable {
        warn(&format!(
            "container {id}: its record cannot be read; keeping every image, blob and root disk"
        ));
    }
    Ok(usage)
}

/// Whether the image with manifest `manifest` must stay for a container. An image
/// whose manifest cannot be read stays if any container might be using it.
pub fn in_use(store: &ImageStore, usage: &Usage, manifest: &Digest) -> bool {
    match store.read_manifest(manifest) {
        Ok(m) => usage.keeps(manifest, &m.config.digest),
        Err(_) => usage.keeps(manifest, manifest) || usage.uses.iter().any(|u| u.manifest.is_none()),
    }
}

/// Removes dangling images (every image, with `all`) that no container uses, then
/// the blobs and root disks nothing needs any more. Only entries of `before` (the
/// index as it was before the lock was taken) go: what a pull, load or commit
/// recorded while prune waited for it stays.
pub fn prune_images(
    store: &ImageStore,
    gc: &GcLock,
    usage: &Usage,
    all: bool,
    before: &[ImageRecord],
) -> anyhow::Result<PrunedImages> {
    let used: HashSet<Digest> = store
        .records()?
        .into_iter()
        .map(|r| r.manifest.digest)
        .filter(|d| in_use(store, usage, d))
        .collect();
    let removed = store.remove_records(
        |r| (all || r.name.is_none()) && !used.contains(&r.manifest.digest) && before.contains(r),
        |d| used.contains(d),
    )?;
    let mut deleted: Vec<Digest> = removed.iter().map(|r| r.manifest.digest.clone()).collect();
    deleted.sort();
    deleted.dedup();
    let bytes = collect_blobs(store, gc, usage)? + collect_root_disks(store, usage)?;
    Ok(PrunedImages {
        untagged: removed.iter().filter_map(|r| r.reference()).collect(),
        deleted,
        bytes,
    })
}

/// Deletes the blobs that neither an image nor a container's image references;
/// returns the bytes freed.
pub fn collect_blobs(store: &ImageStore, gc: &GcLock, usage: &Usage) -> anyhow::Result<u64> {
    if !usage.is_complete() {
        return Ok(0);
    }
    match store.collect_garbage(gc, &usage.manifests()) {
        Ok((_, bytes)) => Ok(bytes),
        Err(e @ StoreError::GcUnsure { .. }) => {
            warn(&format!("{e:#}"));
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the root disks that no stored image and no container needs, and what
/// killed builds left; returns the bytes freed.
pub fn collect_root_disks(store: &ImageStore, usage: &Usage) -> anyhow::Result<u64> {
    if !usage.is_complete() {
        return Ok(0);
    }
    let needed = match image_chain_ids(store) {
        Ok(chains) => chains,
        Err(e) => {
            warn(&format!("no root disk removed: {e:#}"));
            return Ok(0);
        }
    };
    let removed =
        super::rootfs::cache(store).remove_unused(|d| needed.contains(&d.chain_id) || usage.uses_disk(&d.path))?;
    Ok(removed.iter().map(|d| d.allocated).sum())
}

/// The chain ids of the root disks of every stored image.
pub fn image_chain_ids(store: &ImageStore) -> anyhow::Result<HashSet<String>> {
    let mut chains = HashSet::new();
    for record in store.records()? {
        let image = store.image(&record.manifest.digest)?;
        chains.extend(hull::rootfs::chain_id(&image.diff_ids()));
    }
    Ok(chains)
}
