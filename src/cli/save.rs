//! `hull save [-o FILE] IMAGE...`: images to a tarball that both `docker load` and
//! OCI tools (`skopeo ... oci-archive:`) read.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use hull::image::archive;

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Write to a file instead of standard output (`-` for standard output)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Images to save: references or image ids
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

pub fn run(args: SaveArgs) -> anyhow::Result<()> {
    let store = super::open_store()?;
    match args.output.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            archive::save_to_file(&store, &args.images, &path).with_context(|| format!("save {}", path.display()))
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                anyhow::bail!("cowardly refusing to save to a terminal; use the -o flag or redirect");
            }
            let mut out = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            archive::save(&store, &args.images, &mut out).context("save to stdout")?;
            Ok(out.flush()?)
        }
    }
}
