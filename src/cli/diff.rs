//! `hull diff CONTAINER`: the files added (A), changed (C) and deleted (D) in the
//! container's writable layer, as Docker prints them.

use std::io::{self, Read, Write};

use guest_agent::protocol::CopyOp;

use super::{files, lifecycle};

/// Bound on the listing read from the guest.
const MAX_LISTING: u64 = 256 << 20;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    container: String,
}

pub fn run(args: DiffArgs) -> anyhow::Result<()> {
    let c = lifecycle::containers()?.find(&args.container)?;
    let listing = files::read_from(&c, CopyOp::Diff, |out| {
        let mut text = Vec::new();
        out.take(MAX_LISTING).read_to_end(&mut text)?;
        Ok(text)
    })?;
    let mut stdout = io::stdout().lock();
    // Only well-formed lines: the listing comes from the guest.
    for line in String::from_utf8_lossy(&listing).lines() {
        if matches!(line.as_bytes(), [b'A' | b'C' | b'D', b' ', b'/', ..]) && !line.contains(['\x1b', '\r']) {
            writeln!(stdout, "{line}")?;
        }
    }
    Ok(())
}
