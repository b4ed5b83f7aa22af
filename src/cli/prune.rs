//! `hull image prune`: remove dangling (or, with -a, all unused) images, then the
//! blobs and root disks nothing needs any more. An image a container uses stays.

use std::io::{BufRead, Write};

use super::format::human_size;
use super::reclaim::{self, PrunedImages};

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
    let what = if args.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    if !args.force && !confirm(&format!("WARNING! This will remove {what}."))? {
        return Ok(());
    }
    let store = super::open_store()?;
    let before = store.records()?;
    let gc = store.lock_gc()?;
    let usage = reclaim::usage(&store)?;
    let pruned = reclaim::prune_images(&store, &gc, &usage, args.all, &before)?;
    let mut out = std::io::stdout().lock();
    print_images(&mut out, &pruned)?;
    writeln!(out, "Total reclaimed space: {}", human_size(pruned.bytes))?;
    Ok(())
}

/// The `Deleted Images:` section, as Docker prints it (nothing when none went).
pub fn print_images(out: &mut impl Write, pruned: &PrunedImages) -> std::io::Result<()> {
    if pruned.untagged.is_empty() && pruned.deleted.is_empty() {
        return Ok(());
    }
    writeln!(out, "Deleted Images:")?;
    for r in &pruned.untagged {
        writeln!(out, "untagged: {}", r.familiar())?;
    }
    for d in &pruned.deleted {
        writeln!(out, "deleted: {d}")?;
    }
    writeln!(out)
}

/// Prints `warning` and asks on stdin, as Docker does; anything but `y`/`yes`
/// (end of input included) is no.
pub fn confirm(warning: &str) -> anyhow::Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
