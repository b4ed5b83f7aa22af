//! `hull container prune`: remove every stopped container.

use std::io::Write;

use chrono::Utc;
use hull::container::prune::PruneFilter;

use super::format::human_size;

#[derive(Debug, clap::Args)]
pub struct ContainerPruneArgs {
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>", "label!=<key>")
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

pub fn run(args: ContainerPruneArgs) -> anyhow::Result<()> {
    // Checked before the question: a bad filter asks nothing.
    let filter = PruneFilter::parse(&args.filters, Utc::now())?;
    if !args.force && !super::prune::confirm("WARNING! This will remove all stopped containers.")? {
        return Ok(());
    }
    let store = super::lifecycle::containers()?;
    let (removed, bytes) = super::system::prune_containers(&store, |c| filter.matches(c))?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &removed {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(bytes))?;
    Ok(())
}
