//! `hull volume create|ls|inspect|rm|prune`: named volumes.

use std::io::{BufRead, Write};

use hull::container::volumes::{Volume, VolumeError, VolumeStore};
use hull::container::{Container, ContainerStore};
use serde_json::json;

/// The label Docker gives a volume made without a name.
const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

#[derive(Debug, clap::Subcommand)]
pub enum VolumeCommand {
    /// Create a volume (a random name when none is given)
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove one or more volumes (never one a container uses)
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove unused anonymous volumes (with -a, every unused volume)
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Volume name
    name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Do not complain about volumes that do not exist (a volume in use is never
    /// removed)
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub fn run(command: VolumeCommand) -> anyhow::Result<u8> {
    let store = super::open_store()?;
    let volumes = VolumeStore::open(store.root())?;
    let containers = ContainerStore::open(store.root())?;
    match command {
        VolumeCommand::Create(a) => {
            println!("{}", volumes.create(a.name.as_deref())?.name);
            Ok(0)
        }
        VolumeCommand::Ls(a) => list(&volumes, a.quiet).map(|()| 0),
        VolumeCommand::Inspect(a) => inspect(&volumes, &a.names),
        VolumeCommand::Rm(a) => Ok(super::lifecycle::for_each(&a.names, |name| {
            remove(&volumes, &containers, name, a.force)
        })),
        VolumeCommand::Prune(a) => prune(&volumes, &containers, a).map(|()| 0),
    }
}

fn list(volumes: &VolumeStore, quiet: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if !quiet {
        writeln!(out, "DRIVER    VOLUME NAME")?;
    }
    for v in volumes.list()? {
        if quiet {
            writeln!(out, "{}", v.name)?;
        } else {
            writeln!(out, "local     {}", v.name)?;
        }
    }
    Ok(())
}

fn describe(v: &Volume) -> serde_json::Value {
    json!({
        "CreatedAt": v.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Driver": "local",
        "Labels": if v.anonymous { json!({ ANONYMOUS_LABEL: "" }) } else { json!({}) },
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}

fn inspect(volumes: &VolumeStore, names: &[String]) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match volumes.get(name) {
            Ok(v) => found.push(describe(&v)),
            Err(e) => {
                eprintln!("hull: {}", hull::error::error_chain(&e));
                failed = true;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", super::inspect::pretty(&serde_json::Value::Array(found))?)?;
    Ok(if failed { super::EXIT_HULL_FAILURE } else { 0 })
}

/// The containers (in any state) that mount volume `name`.
pub(crate) fn users<'a>(all: &'a [Container], name: &'a str) -> impl Iterator<Item = &'a Container> {
    all.iter()
        .filter(move |c| c.config.mounts.iter().any(|m| m.volume_name() == Some(name)))
}

fn user_of<'a>(all: &'a [Container], name: &'a str) -> Option<&'a Container> {
    users(all, name).next()
}

/// Bytes a volume takes on disk (its directory, record included).
pub(crate) fn allocated(v: &Volume) -> u64 {
    let dir = v.mountpoint.parent().unwrap_or(&v.mountpoint);
    hull::image::store::fs::allocated_bytes(dir).unwrap_or(0)
}

/// Removes every volume no container uses, checked under the containers' lock so no
/// container can start using one in between; returns each one's name and size.
/// Removes the volumes no container uses (with `named`, named ones too); returns
/// their names and sizes.
pub(crate) fn remove_unused(
    volumes: &VolumeStore,
    containers: &ContainerStore,
    named: bool,
) -> anyhow::Result<Vec<(String, u64)>> {
    containers.with_containers(|all| -> anyhow::Result<Vec<(String, u64)>> {
        let mut removed = Vec::new();
        for v in volumes.list()? {
            if (named || v.anonymous) && user_of(all, &v.name).is_none() {
                let size = allocated(&v);
                volumes.remove(&v.name)?;
                removed.push((v.name, size));
            }
        }
        Ok(removed)
    })?
}

/// Removes volume `name` unless a container uses it; the check and the removal happen
/// under the containers' lock, so no container can start using it in between. With
/// `force`, a volume that does not exist is no error.
fn remove(volumes: &VolumeStore, containers: &ContainerStore, name: &str, force: bool) -> anyhow::Result<()> {
    match volumes.get(name) {
        Err(VolumeError::NoSuchVolume(_)) if force => return Ok(()),
        other => other?,
    };
    containers.with_containers(|all| match user_of(all, name) {
        Some(c) => Err(VolumeError::InUse {
            name: name.to_owned(),
            container: format!("{} ({})", &c.config.id[..12], c.config.name),
        }),
        None => volumes.remove(name),
    })??;
    Ok(())
}

fn prune(volumes: &VolumeStore, containers: &ContainerStore, args: PruneArgs) -> anyhow::Result<()> {
    if !args.force && !confirm(args.all)? {
        return Ok(());
    }
    let removed = remove_unused(volumes, containers, args.all)?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for (name, _) in &removed {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed volumes: {}", removed.len())?;
    Ok(())
}

fn confirm(all: bool) -> anyhow::Result<bool> {
    let which = if all { "all local" } else { "anonymous local" };
    print!("WARNING! This will remove {which} volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
