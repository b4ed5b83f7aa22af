//! `hull load [-i FILE]`: images from a `docker save` or OCI-layout archive.

use std::io::{self, IsTerminal};
use std::path::PathBuf;

use anyhow::Context;
use hull::image::archive;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from a tar archive file (plain, gzip or zstd) instead of standard input
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Accepted for Docker compatibility: load shows no progress output
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let store = super::open_store()?;
    let loaded = match args.input.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            archive::load(&store, file).with_context(|| format!("load {}", path.display()))?
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                anyhow::bail!("requested load from stdin, but stdin is a terminal; use -i FILE or redirect stdin");
            }
            archive::load(&store, stdin.lock()).context("load from stdin")?
        }
    };
    let mut out = io::stdout().lock();
    for image in loaded {
        io::Write::write_all(&mut out, format!("{image}\n").as_bytes())?;
    }
    Ok(())
}
