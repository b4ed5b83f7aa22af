//! Command-line parsing and dispatch: one file per command.

mod commit;
mod container_inspect;
mod container_prune;
mod cp;
mod create;
mod diff;
mod exec;
mod export;
mod files;
mod format;
mod history;
mod images;
mod import;
mod inspect;
mod lifecycle;
mod load;
mod login;
mod logs;
mod monitor;
mod port;
mod prune;
mod ps;
mod pull;
mod push;
mod reclaim;
mod rename;
mod rm;
mod rmi;
mod rootfs;
mod run;
mod save;
mod start;
mod stop;
mod system;
mod tag;
mod terminal;
mod version;
mod volume;

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
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(create::CreateArgs),
    /// Start one or more stopped containers
    Start(start::StartArgs),
    /// Stop one or more running containers
    Stop(stop::StopArgs),
    /// Restart one or more containers
    Restart(start::RestartArgs),
    /// Kill one or more running containers
    Kill(stop::KillArgs),
    /// Remove one or more containers
    Rm(rm::RmArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Rename a container
    Rename(rename::RenameArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(stop::WaitArgs),
    /// Return low-level information on containers or images
    Inspect(container_inspect::InspectArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(diff::DiffArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Export a container's filesystem as a tar archive
    Export(export::ExportArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(import::ImportArgs),
    /// List port mappings or a specific mapping for the container
    Port(port::PortArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Internal: the monitor of one container
    #[command(hide = true)]
    ContainerMonitor(monitor::MonitorArgs),
    /// Download an image from a registry
    Pull(pull::PullArgs),
    /// Upload an image to a registry
    Push(push::PushArgs),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(tag::TagArgs),
    /// Remove one or more images
    Rmi(rmi::RmiArgs),
    /// Show the history of an image
    History(history::HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Load images from a tar archive (docker save or OCI layout) or STDIN
    Load(load::LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(save::SaveArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage hull: disk usage and pruning
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Show the hull version information, and what a VM boots from
    Version(version::VersionArgs),
    /// Display system-wide information
    Info(version::InfoArgs),
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(create::CreateArgs),
    /// Start one or more stopped containers
    Start(start::StartArgs),
    /// Stop one or more running containers
    Stop(stop::StopArgs),
    /// Restart one or more containers
    Restart(start::RestartArgs),
    /// Kill one or more running containers
    Kill(stop::KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(rm::RmArgs),
    /// List containers
    #[command(aliases = ["ps", "list"])]
    Ls(ps::PsArgs),
    /// Rename a container
    Rename(rename::RenameArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(stop::WaitArgs),
    /// Display detailed information on one or more containers
    Inspect(container_inspect::InspectArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(diff::DiffArgs),
    /// Create a new image from a container's changes
    Commit(commit::CommitArgs),
    /// Export a container's filesystem as a tar archive
    Export(export::ExportArgs),
    /// List port mappings or a specific mapping for the container
    Port(port::PortArgs),
    /// Remove all stopped containers
    Prune(container_prune::ContainerPruneArgs),
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
    /// Upload an image to a registry
    Push(push::PushArgs),
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
    /// Import the contents from a tarball to create a filesystem image
    Import(import::ImportArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    ignore_file_size_signal();
    let result = dispatch(cli.command);
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Reported>().is_some() => ExitCode::from(EXIT_HULL_FAILURE),
        Err(e) => {
            eprintln!("hull: {e:#}");
            ExitCode::from(EXIT_HULL_FAILURE)
        }
    }
}

/// Runs a command; the value is the exit code (a container's own, for `run`).
fn dispatch(command: Command) -> anyhow::Result<u8> {
    let done = |r: anyhow::Result<()>| r.map(|()| 0);
    match command {
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => done(pull::run(a)),
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => done(push::run(a)),
        Command::Login(a) => done(login::login(a)),
        Command::Logout(a) => done(login::logout(a)),
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => done(images::run(a)),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => done(tag::run(a)),
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => done(rmi::run(a)),
        Command::Image(ImageCommand::Inspect(a)) => done(inspect::run(a)),
        Command::History(a) | Command::Image(ImageCommand::History(a)) => done(history::run(a)),
        Command::Image(ImageCommand::Prune(a)) => done(prune::run(a)),
        Command::Image(ImageCommand::Rootfs(a)) => done(rootfs::run(a)),
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => done(load::run(a)),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => done(save::run(a)),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => run::run(a),
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => done(create::run(a)),
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => start::run(a),
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => stop::run(a),
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => start::restart(a),
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => stop::kill(a),
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => rm::run(a),
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => ps::run(a),
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => done(rename::run(a)),
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => logs::run(a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => exec::run(a),
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => stop::wait(a),
        Command::Inspect(a) => container_inspect::run(a, true),
        Command::Container(ContainerCommand::Inspect(a)) => container_inspect::run(a, false),
        Command::Cp(a) | Command::Container(ContainerCommand::Cp(a)) => done(cp::run(a)),
        Command::Diff(a) | Command::Container(ContainerCommand::Diff(a)) => done(diff::run(a)),
        Command::Commit(a) | Command::Container(ContainerCommand::Commit(a)) => done(commit::run(a)),
        Command::Export(a) | Command::Container(ContainerCommand::Export(a)) => done(export::run(a)),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => done(import::run(a)),
        Command::Port(a) | Command::Container(ContainerCommand::Port(a)) => done(port::run(a)),
        Command::Container(ContainerCommand::Prune(a)) => done(container_prune::run(a)),
        Command::Volume(a) => volume::run(a),
        Command::System(a) => done(system::run(a)),
        Command::Version(a) => done(version::version(a)),
        Command::Info(a) => done(version::info(a)),
        Command::ContainerMonitor(a) => monitor::run(a),
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

/// Parses the name a new tag gets (`tag`, `commit`, `import`): a reference without a
/// digest.
pub(crate) fn tag_target(name: &str) -> anyhow::Result<hull::image::reference::Reference> {
    let target = hull::image::reference::Reference::parse(name)?;
    if target.digest().is_some() {
        anyhow::bail!("refusing to create a tag with a digest reference: {name}");
    }
    Ok(target)
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
