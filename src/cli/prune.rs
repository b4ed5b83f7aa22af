//! `hull image prune`: remove dangling (or, with -a, all unused) images and the blobs
//! nothing references any more.

use std::io::{BufRead, Write};

use super::format::human_size;

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(args: PruneArgs) -> anyhow::Result<()> {
    if !args.force && !confirm(args.all)? {
        return Ok(());
    }
    let store = super::open_store()?;
    let removed = store.remove_records(|r| args.all || r.name.is_none())?;
    let mut deleted: Vec<_> = removed.iter().map(|r| r.manifest.digest.clone()).collect();
    deleted.dedup();
    let (_, bytes) = store.collect_garbage()?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for r in removed.iter().filter_map(|r| r.reference()) {
            writeln!(out, "untagged: {}", r.familiar())?;
        }
        for d in &deleted {
            writeln!(out, "deleted: {d}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(bytes))?;
    Ok(())
}

fn confirm(all: bool) -> anyhow::Result<bool> {
    let what = if all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    print!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
