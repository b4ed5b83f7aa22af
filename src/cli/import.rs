//! `hull import [-c CHANGE]... [-m MESSAGE] FILE|- [REPOSITORY[:TAG]]`: a tar of a
//! file system (plain, gzip or zstd; `hull export`'s output, for one) becomes a
//! one-layer image. The stream is checked entry by entry while it is stored; a
//! malformed or escaping tar leaves nothing behind.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};

use anyhow::{bail, Context};
use guest_agent::archive::confine;
use hull::image::build::{self, HistoryEntry};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long, default_value = "")]
    message: String,
    /// The tar file, or - for STDIN
    file: String,
    /// REPOSITORY[:TAG] of the new image (untagged when left out)
    repository: Option<String>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let reference = args.repository.as_deref().map(super::tag_target).transpose()?;
    let mut config = build::empty_config();
    build::apply_changes(&mut config, &args.change)?;
    let source: Box<dyn Read + Send> = match args.file.as_str() {
        "-" if io::stdin().is_terminal() => bail!("refusing to read a tar stream from a terminal"),
        "-" => Box::new(io::stdin()),
        path => Box::new(File::open(path).with_context(|| format!("open {path}"))?),
    };
    let tar = decompressed(BufReader::with_capacity(256 * 1024, source))?;
    let store = super::open_store()?;
    let _pin = store.pin()?;
    let layer = build::write_layer(&store, Checked::new(tar)).with_context(|| {
        format!(
            "import {}",
            if args.file == "-" { "standard input" } else { &args.file }
        )
    })?;
    let history = HistoryEntry {
        created_by: "hull import",
        comment: if args.message.is_empty() {
            "Imported"
        } else {
            &args.message
        },
        author: "",
    };
    // Also sets the config's creation time.
    build::add_layer(&mut config, &layer.blob.digest, &history)?;
    let id = build::write_image(&store, &config, vec![layer], reference.as_ref())?;
    println!("{id}");
    Ok(())
}

/// The tar inside `input`, whatever its compression (by magic number).
fn decompressed(mut input: BufReader<Box<dyn Read + Send>>) -> anyhow::Result<Box<dyn Read + Send>> {
    let head = input.fill_buf().context("reading the archive")?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(input)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        _ => Box::new(input),
    })
}

/// Passes a tar stream through while checking it: the bytes go on unchanged; a
/// malformed header, an entry name with `..`, or an entry type a layer cannot hold
/// turns into a read error, so nothing is stored.
struct Checked {
    reader: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    at: usize,
}

impl Checked {
    fn new(tar: Box<dyn Read + Send>) -> Checked {
        // A tar reader runs on its own thread over a tee of the stream, handing each
        // chunk on once it has been read; the first error ends the stream.
        let (tx, rx) = std::sync::mpsc::sync_channel(8);
        std::thread::spawn(move || {
            let tee = Tee {
                inner: tar,
                tx: tx.clone(),
            };
            if let Err(e) = check_entries(tee) {
                let _ = tx.send(Err(e));
            }
        });
        Checked {
            reader: rx,
            pending: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            match self.reader.recv() {
                Ok(Ok(chunk)) => (self.pending, self.at) = (chunk, 0),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

struct Tee {
    inner: Box<dyn Read + Send>,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 && self.tx.send(Ok(buf[..n].to_vec())).is_err() {
            return Err(io::Error::other("the store stopped reading"));
        }
        Ok(n)
    }
}

fn check_entries(mut tee: Tee) -> io::Result<()> {
    let mut archive = tar::Archive::new(&mut tee);
    let mut count = 0u64;
    for entry in archive.entries()? {
        let entry = entry?;
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("tar entry {shown:?}: {why}"));
        confine(&name).map_err(&bad)?;
        use tar::EntryType::*;
        match entry.header().entry_type() {
            Regular | Continuous | Directory | Symlink | Link | Char | Block | Fifo => {}
            other => return Err(bad(format!("unsupported entry type {:?}", other.as_byte() as char))),
        }
        count += 1;
    }
    if count == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a tar archive, or an empty one",
        ));
    }
    // The end-of-archive blocks and any padding after them.
    io::copy(&mut tee, &mut io::sink())?;
    Ok(())
}
