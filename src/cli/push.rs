//! `hull push`: upload an image from the store to its registry.

use std::sync::Arc;

use hull::image::digest::Digest;
use hull::image::push::{Failure, PushProgress, Pusher, Silent};
use hull::image::reference::Reference;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Image reference: NAME[:TAG]
    image: String,
}

/// Overrides the size above which blobs go up in chunks (bytes).
const CHUNK_ENV: &str = "HULL_PUSH_CHUNK_BYTES";

pub fn run(args: PushArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.image)?;
    let store = super::open_store()?;
    let progress: Arc<dyn PushProgress> = if args.quiet { Arc::new(Silent) } else { Arc::new(Lines) };
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.familiar_name());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut pusher = Pusher::new(store, reference.registry())?;
    if let Some(bytes) = std::env::var(CHUNK_ENV).ok().and_then(|v| v.parse().ok()) {
        pusher = pusher.with_chunk_bytes(bytes);
    }
    let pushed = runtime.block_on(pusher.push(&reference, progress))?;
    if !args.quiet {
        println!(
            "{}: digest: {} size: {}",
            pushed.tag, pushed.manifest.digest, pushed.manifest.size
        );
    }
    Ok(())
}

/// Plain lines, as Docker prints when stdout is not a terminal.
struct Lines;

impl Lines {
    fn say(digest: &Digest, what: &str) {
        println!("{}: {what}", digest.short());
    }
}

impl PushProgress for Lines {
    fn layer_preparing(&self, d: &Digest) {
        Self::say(d, "Preparing");
    }
    fn layer_exists(&self, d: &Digest) {
        Self::say(d, "Layer already exists");
    }
    fn layer_mounted(&self, d: &Digest, from: &str) {
        Self::say(d, &format!("Mounted from {from}"));
    }
    fn layer_retrying(&self, d: &Digest, failure: &Failure) {
        Self::say(d, &format!("Retrying ({failure})"));
    }
    fn layer_pushed(&self, d: &Digest) {
        Self::say(d, "Pushed");
    }
}
