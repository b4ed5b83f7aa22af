//! `hull rmi` / `hull image rm`: untag, and delete images left with no tag.

use std::io::Write;

use hull::image::reference::Reference;
use hull::image::store::ImageStore;

#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Force removal of an image referenced by several tags
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
    let mut failed = false;
    for query in &args.images {
        if let Err(e) = remove(&store, query, args.force) {
            eprintln!("hull: {e:#}");
            failed = true;
        }
    }
    store.collect_garbage()?;
    if failed {
        return Err(super::Reported.into());
    }
    Ok(())
}

fn remove(store: &ImageStore, query: &str, force: bool) -> anyhow::Result<()> {
    let image = store.find(query)?;
    let by_name = Reference::parse(query)
        .ok()
        .map(|r| r.to_string())
        .filter(|name| image.tags.iter().any(|t| &t.to_string() == name));
    let mut out = std::io::stdout().lock();
    let removed = match by_name {
        // By tag: drop that tag only.
        Some(name) => store.remove_records(|r| r.name.as_deref() == Some(name.as_str()))?,
        // By id: drop every tag, which needs -f when there are several.
        None => {
            if image.tags.len() > 1 && !force {
                anyhow::bail!(
                    "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    image.config_digest.short()
                );
            }
            store.remove_records(|r| r.manifest.digest == image.manifest_digest)?
        }
    };
    for r in removed.iter().filter_map(|r| r.reference()) {
        writeln!(out, "Untagged: {}", r.familiar())?;
    }
    let still_tagged = store
        .records()?
        .iter()
        .any(|r| r.manifest.digest == image.manifest_digest);
    if !still_tagged {
        writeln!(out, "Deleted: {}", image.config_digest)?;
    }
    Ok(())
}
