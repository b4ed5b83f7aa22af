//! Command-line parsing and dispatch: one file per command.

mod format;
mod history;
mod images;
mod inspect;
mod load;
mod prune;
mod pull;
mod rmi;
mod rootfs;
mod save;
mod tag;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a failure of hull itself, as in Docker.
pub const EXIT_HULL_FAILURE: u8 = 125;

#[derive(Debug, Parser)]
#[command(
    name = "hull",
    version,
    about = "Run OCI images, each container in its own KVM micro-VM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download an image from a registry
    Pull(pull::PullArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::TagArgs),
    /// Remove one or more images
    Rmi(rmi::RmiArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Load images from a tar archive (docker save or OCI layout) or STDIN
    Load(load::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(save::SaveArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(alias = "list")]
    Ls(images::ImagesArgs),
    /// Display detailed information on one or more images
    Inspect(inspect::InspectArgs),
    /// Show the history of an image
    History(history::HistoryArgs),
    /// Download an image from a registry
    Pull(pull::PullArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::TagArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(rmi::RmiArgs),
    /// Remove unused images
    Prune(prune::PruneArgs),
    /// Build (or find) an image's read-only root disk and print its path and size
    Rootfs(rootfs::RootfsArgs),
    /// Load images from a tar archive (docker save or OCI layout) or STDIN
    Load(load::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(save::SaveArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    ignore_file_size_signal();
    let result = match cli.command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => pull::run(a),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::run(a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => tag::run(a),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => rmi::run(a),
        Command::Image(ImageCommand::Inspect(a)) => inspect::run(a),
        Command::Image(ImageCommand::History(a)) => history::run(a),
        Command::Image(ImageCommand::Prune(a)) => prune::run(a),
        Command::Image(ImageCommand::Rootfs(a)) => rootfs::run(a),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => load::run(a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => save::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::from(EXIT_HULL_FAILURE),
        Err(e) => {
            eprintln!("hull: {e:#}");
            ExitCode::from(EXIT_HULL_FAILURE)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HULL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
}

/// A write past RLIMIT_FSIZE then fails with EFBIG, which hull reports and cleans up
/// after, instead of the process dying from SIGXFSZ with a partial temp file.
fn ignore_file_size_signal() {
    // SAFETY: installing SIG_IGN for SIGXFSZ has no memory-safety preconditions; no
    // other thread exists yet.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// A reader that closed our stdout (`hull images | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A failure whose messages were already printed; only the exit code is left to set.
#[derive(Debug)]
pub(crate) struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors reported above")
    }
}

impl std::error::Error for Reported {}

/// Opens the store named by `HULL_ROOT` / `XDG_DATA_HOME`.
pub(crate) fn open_store() -> anyhow::Result<hull::image::store::ImageStore> {
    Ok(hull::image::store::ImageStore::open(
        hull::image::store::ImageStore::default_root(),
    )?)
}

/// Refuses, before touching the store, a query that is neither a reference nor an
/// image id (hex, optionally with `sha256:`).
pub(crate) fn check_image_query(query: &str) -> anyhow::Result<()> {
    let hex = query.strip_prefix("sha256:").unwrap_or(query);
    if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    hull::image::reference::Reference::parse(query)?;
    Ok(())
}
