//! `hull export [-o FILE] CONTAINER`: the container's whole file system as a tar.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::bail;
use guest_agent::protocol::CopyOp;

use super::{files, lifecycle};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    container: String,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let c = lifecycle::containers()?.find(&args.container)?;
    match args.output.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let mut out = hull::image::archive::AtomicFile::create(&path)?;
            files::read_from(&c, CopyOp::Export, |tar| Ok(io::copy(tar, &mut out.file).map(drop)?))?;
            Ok(out.commit()?)
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal; use the -o flag or redirect");
            }
            let mut stdout = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
            files::read_from(&c, CopyOp::Export, |tar| Ok(io::copy(tar, &mut stdout).map(drop)?))?;
            Ok(stdout.flush()?)
        }
    }
}
