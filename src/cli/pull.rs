//! `hull pull`: download an image from a registry.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hull::image::digest::Digest;
use hull::image::manifest::Platform;
use hull::image::reference::Reference;
use hull::image::registry::{PullProgress, Puller, Silent};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Suppress verbose output
    #[arg(short, long)]
    quiet: bool,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long)]
    platform: Option<String>,
    /// Image reference: NAME[:TAG|@DIGEST]
    image: String,
}

pub fn run(args: PullArgs) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.image)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p).with_context(|| format!("invalid platform {p:?}: expected os/arch[/variant]"))?,
        None => Platform::host(),
    };
    let store = super::open_store()?;
    let progress: Arc<dyn PullProgress> = if args.quiet {
        Arc::new(Silent)
    } else if std::io::stdout().is_terminal() {
        Arc::new(Bars::default())
    } else {
        Arc::new(Lines)
    };
    if !args.quiet {
        let what = reference
            .tag()
            .map(str::to_owned)
            .unwrap_or_else(|| reference.digest().map(|d| d.to_string()).unwrap_or_default());
        println!("{what}: Pulling from {}", short_repository(&reference));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let puller = Puller::new(store, reference.registry(), platform)?;
    let pulled = runtime.block_on(puller.pull(&reference, progress))?;
    let mut out = std::io::stdout().lock();
    if !args.quiet {
        writeln!(out, "Digest: {}", pulled.repo_digest)?;
        if pulled.updated {
            writeln!(out, "Status: Downloaded newer image for {}", reference.familiar())?;
        } else {
            writeln!(out, "Status: Image is up to date for {}", reference.familiar())?;
        }
    }
    writeln!(out, "{reference}")?;
    Ok(())
}

/// `library/alpine` as Docker prints it in "Pulling from".
fn short_repository(r: &Reference) -> String {
    if r.registry() == hull::image::reference::DEFAULT_REGISTRY {
        r.repository().to_owned()
    } else {
        r.name()
    }
}

/// Plain lines, as Docker prints when stdout is not a terminal.
struct Lines;

impl Lines {
    fn say(digest: &Digest, what: &str) {
        println!("{}: {what}", digest.short());
    }
}

impl PullProgress for Lines {
    fn layer_exists(&self, d: &Digest) {
        Self::say(d, "Already exists");
    }
    fn layer_waiting(&self, d: &Digest, _size: u64) {
        Self::say(d, "Pulling fs layer");
    }
    fn layer_verifying(&self, d: &Digest) {
        Self::say(d, "Verifying Checksum");
    }
    fn layer_done(&self, d: &Digest) {
        Self::say(d, "Download complete");
        Self::say(d, "Pull complete");
    }
}

/// One progress bar per layer on a terminal.
#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn with_bar(&self, d: &Digest, f: impl FnOnce(&ProgressBar)) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(bar) = bars.get(d) {
                f(bar);
            }
        }
    }
}

impl PullProgress for Bars {
    fn layer_waiting(&self, d: &Digest, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        let style = ProgressStyle::with_template("{prefix}: {msg:<18} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(d.short().to_owned());
        bar.set_message("Waiting");
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(d.clone(), bar);
        }
    }
    fn layer_exists(&self, d: &Digest) {
        self.with_bar(d, |b| b.finish_with_message("Already exists"));
    }
    fn layer_bytes(&self, d: &Digest, n: u64) {
        self.with_bar(d, |b| {
            b.set_message("Downloading");
            b.inc(n)
        });
    }
    fn layer_verifying(&self, d: &Digest) {
        self.with_bar(d, |b| b.set_message("Verifying Checksum"));
    }
    fn layer_done(&self, d: &Digest) {
        self.with_bar(d, |b| b.finish_with_message("Pull complete"));
    }
}

/// Pulls for `run`/`create`: progress as plain lines on stderr, as Docker prints it
/// when an image is missing.
pub fn pull_quietly(store: &hull::image::store::ImageStore, reference: &Reference) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let puller = Puller::new(store.clone(), reference.registry(), Platform::host())?;
    let pulled = runtime.block_on(puller.pull(reference, Arc::new(Silent)))?;
    eprintln!("Digest: {}", pulled.repo_digest);
    eprintln!("Status: Downloaded newer image for {}", reference.familiar());
    Ok(())
}
