//! `hull image rootfs IMAGE [-o FILE]`: build (or find) the read-only root disk the
//! guest will boot from, and print where it is.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use hull::image::store::{Image, ImageStore};
use hull::rootfs::{LayerInput, Limits, RootfsCache};

#[derive(Debug, clap::Args)]
pub struct RootfsArgs {
    /// Also copy the disk image to FILE
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Image, by reference or id
    image: String,
}

pub fn run(args: RootfsArgs) -> anyhow::Result<()> {
    super::check_image_query(&args.image)?;
    let store = super::open_store()?;
    let _pin = store.pin()?;
    let image = store.find(&args.image)?;
    let built = cache(&store).ensure(&layer_inputs(&store, &image)?)?;
    let (path, size) = match &args.output {
        Some(out) => (out.clone(), copy_atomically(&built.path, out)?),
        None => (built.path.clone(), built.size),
    };
    writeln!(std::io::stdout().lock(), "{}\t{size}", path.display())?;
    Ok(())
}

/// The rootfs cache of a store: `<store>/rootfs/<chain-id>.erofs`.
pub fn cache(store: &ImageStore) -> RootfsCache {
    RootfsCache::new(store.root().join("rootfs"), Limits::default())
}

/// Pairs each layer blob with its diff_id from the config.
pub fn layer_inputs(store: &ImageStore, image: &Image) -> anyhow::Result<Vec<LayerInput>> {
    let diff_ids = image.diff_ids();
    anyhow::ensure!(
        diff_ids.len() == image.manifest.layers.len(),
        "image {}: config lists {} diff_ids for {} layers",
        image.config_digest.short(),
        diff_ids.len(),
        image.manifest.layers.len()
    );
    Ok(image
        .manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| LayerInput {
            digest: layer.blob.digest.to_string(),
            diff_id,
            compression: layer.compression,
            path: store.blob_path(&layer.blob.digest),
        })
        .collect())
}

/// Copies to `dest` through a temp file beside it, so `dest` is whole or absent.
fn copy_atomically(src: &std::path::Path, dest: &std::path::Path) -> anyhow::Result<u64> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("rootfs"),
        std::process::id()
    ));
    let result = (|| {
        let size = std::fs::copy(src, &tmp).with_context(|| format!("copy to {}", tmp.display()))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dest).with_context(|| format!("rename to {}", dest.display()))?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
