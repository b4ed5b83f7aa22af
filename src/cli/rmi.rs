//! `hull rmi` / `hull image rm`: untag, and delete images left with no tag. An image
//! a container uses is never deleted: removing its last tag needs `-f` and leaves it
//! untagged, as Docker does.

use std::io::Write;

use anyhow::bail;
use hull::container::usage::Usage;
use hull::image::reference::Reference;
use hull::image::store::{Image, ImageStore};

use super::reclaim;

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Force removal of an image referenced by several tags, or untag one a
    /// container uses (the image itself stays while it is used)
    #[arg(short, long)]
    force: bool,
    /// Images, by reference or id
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(args: RmiArgs) -> anyhow::Result<()> {
    for query in &args.images {
        super::check_image_query(query)?;
    }
    let store = super::open_store()?;
    let gc = store.lock_gc()?;
    let usage = reclaim::usage(&store)?;
    let mut failed = false;
    for query in &args.images {
        if let Err(e) = remove(&store, &usage, query, args.force) {
            eprintln!("hull: {e:#}");
            failed = true;
        }
    }
    reclaim::collect_blobs(&store, &gc, &usage)?;
    if failed {
        return Err(super::Reported.into());
    }
    Ok(())
}

fn remove(store: &ImageStore, usage: &Usage, query: &str, force: bool) -> anyhow::Result<()> {
    let image = store.find(query)?;
    let by_name = Reference::parse(query)
        .ok()
        .map(|r| r.to_string())
        .filter(|name| image.tags.iter().any(|t| &t.to_string() == name));
    let used = reclaim::in_use(store, usage, &image.manifest_digest);
    let keep = |d: &hull::image::digest::Digest| used && d == &image.manifest_digest;
    let removed = match by_name {
        // By tag: drop that tag only.
        Some(name) => {
            check_untag(usage, &image, query, force)?;
            store.remove_records(|r| r.name.as_deref() == Some(name.as_str()), keep)?
        }
        // By id: drop every tag, which needs -f when there are several.
        None => {
            check_delete(usage, &image, force)?;
            store.remove_records(|r| r.manifest.digest == image.manifest_digest, keep)?
        }
    };
    let mut out = std::io::stdout().lock();
    for r in removed.iter().filter_map(|r| r.reference()) {
        writeln!(out, "Untagged: {}", r.familiar())?;
    }
    let still_recorded = store
        .records()?
        .iter()
        .any(|r| r.manifest.digest == image.manifest_digest);
    if !still_recorded {
        writeln!(out, "Deleted: {}", image.config_digest)?;
    }
    Ok(())
}

/// The last tag of an image a container uses goes only with -f.
fn check_untag(usage: &Usage, image: &Image, query: &str, force: bool) -> anyhow::Result<()> {
    let user = usage.user_of(&image.manifest_digest, &image.config_digest);
    if let (Some(user), false, 1) = (user, force, image.tags.len()) {
        bail!(
            "conflict: unable to remove repository reference {query:?} (must force) - container {} is using its referenced image {}",
            short(&user.container),
            image.config_digest.short()
        );
    }
    Ok(())
}

/// Deleting by id: several tags need -f; an image a container uses loses its tags
/// only with -f, and an untagged one it uses cannot go at all.
fn check_delete(usage: &Usage, image: &Image, force: bool) -> anyhow::Result<()> {
    let id = image.config_digest.short();
    if image.tags.len() > 1 && !force {
        bail!("conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories");
    }
    let Some(user) = usage.user_of(&image.manifest_digest, &image.config_digest) else {
        return Ok(());
    };
    let state = if user.running { "running" } else { "stopped" };
    let container = short(&user.container);
    if image.tags.is_empty() {
        bail!(
            "conflict: unable to delete {id} (cannot be forced) - image is being used by {state} container {container}"
        );
    }
    if !force {
        bail!(
            "conflict: unable to delete {id} (must be forced) - image is being used by {state} container {container}"
        );
    }
    Ok(())
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
