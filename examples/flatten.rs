//! Flattens tar layers into an EROFS image: `flatten OUT.erofs LAYER.tar[.gz|.zst]...`
//!
//! Used by `scripts/bench-rootfs.sh`; the compression is taken from the file name and
//! each layer's diff id is the one computed while reading (no expected value).

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context};
use hull::rootfs::{chain_id, Flattener, Limits};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out, layers)) = args.split_first() else {
        bail!("usage: flatten OUT.erofs LAYER...")
    };
    if layers.is_empty() {
        bail!("usage: flatten OUT.erofs LAYER...");
    }
    let file = File::create(out).with_context(|| format!("creating {out}"))?;
    let mut flattener = Flattener::new(&file, Limits::default());
    let mut diff_ids = Vec::new();
    for layer in layers {
        let stream = open(Path::new(layer))?;
        let digest = format!("file:{layer}");
        let diff_id = flattener
            .add_layer(&digest, stream)
            .map_err(|e| anyhow::anyhow!(hull::rootfs::error_chain(&e)))?;
        diff_ids.push(diff_id);
    }
    let done = flattener
        .finish()
        .map_err(|e| anyhow::anyhow!(hull::rootfs::error_chain(&e)))?;
    file.sync_all()?;
    println!(
        "{out} {} bytes, {} inodes, chain {}",
        done.info.size,
        done.info.inodes,
        chain_id(&diff_ids).unwrap_or_default()
    );
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<Box<dyn std::io::Read>> {
    let file = std::io::BufReader::with_capacity(
        256 << 10,
        File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(file)?)
    } else {
        Box::new(file)
    })
}
