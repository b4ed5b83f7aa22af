//! `hull tag SOURCE TARGET`.

#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG] or image id
    source: String,
    /// TARGET_IMAGE[:TAG]
    target: String,
}

pub fn run(args: TagArgs) -> anyhow::Result<()> {
    let target = super::tag_target(&args.target)?;
    super::check_image_query(&args.source)?;
    let store = super::open_store()?;
    let image = store.find(&args.source)?;
    let record = store
        .records()?
        .into_iter()
        .find(|r| r.manifest.digest == image.manifest_digest)
        .ok_or_else(|| anyhow::anyhow!("No such image: {}", args.source))?;
    store.tag(&target, &record.manifest, None)?;
    Ok(())
}
