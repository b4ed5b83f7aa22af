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
        out.take(MAX_LISTING + 1).read_to_end(&mut text)?;
        if text.len() as u64 > MAX_LISTING {
            anyhow::bail!(
                "container {}: the change listing exceeds {MAX_LISTING} bytes",
                c.config.name
            );
        }
        Ok(text)
    })?;
    let mut stdout = io::stdout().lock();
    for line in well_formed(&String::from_utf8_lossy(&listing)) {
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}

/// Only well-formed lines, with nothing a terminal would act on: the listing comes
/// from the guest.
fn well_formed(listing: &str) -> impl Iterator<Item = &str> {
    listing.lines().filter(|line| {
        matches!(line.as_bytes(), [b'A' | b'C' | b'D', b' ', b'/', ..])
            && hull::container::agent::printable(line) == *line
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn listing_lines_with_escapes_or_bad_shape_are_dropped() {
        let listing = "A /ok\nC /etc\x1b]0;owned\x07\nX /bad\nD /go\rne\nA /\u{202e}txt.exe\nD /x\u{9b}2J\n";
        assert_eq!(super::well_formed(listing).collect::<Vec<_>>(), ["A /ok"]);
    }
}
