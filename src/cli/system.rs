//! `hull system df` and `hull system prune`: what the store takes on disk, by kind,
//! and the removal of everything no container needs.
//!
//! Sizes are what is allocated on disk (`st_blocks * 512`): a container's writable
//! disk is a sparse 16 GiB file that holds only what the guest wrote.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use hull::container::usage::Usage;
use hull::container::volumes::VolumeStore;
use hull::container::{Container, ContainerStore};
use hull::image::digest::Digest;
use hull::image::store::fs::allocated_bytes;
use hull::image::store::ImageStore;
use hull::rootfs::CachedDisk;
use serde_json::json;

use super::format::{human_since, human_size, write_table};
use super::reclaim;

#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Show hull disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
    /// Display system-wide information (as `hull info`)
    Info(super::version::InfoArgs),
}

#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    verbose: bool,
    /// Output format: table (default) or json (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Also remove volumes no container uses
    #[arg(long)]
    volumes: bool,
}

pub fn run(command: SystemCommand) -> anyhow::Result<()> {
    match command {
        SystemCommand::Df(a) => df(&a),
        SystemCommand::Prune(a) => prune(&a),
        SystemCommand::Info(a) => super::version::info(a),
    }
}

/// One line of the summary.
struct Summary {
    kind: &'static str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Summary {
    /// `1.2MB (50%)`, as Docker prints it (no percentage when there is nothing).
    fn reclaimable_text(&self) -> String {
        match (self.reclaimable * 100).checked_div(self.size) {
            Some(percent) => format!("{} ({percent}%)", human_size(self.reclaimable)),
            None => human_size(self.reclaimable),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "Type": self.kind,
            "TotalCount": self.total.to_string(),
            "Active": self.active.to_string(),
            "Size": human_size(self.size),
            "Reclaimable": self.reclaimable_text(),
            "SizeBytes": self.size,
            "ReclaimableBytes": self.reclaimable,
        })
    }
}

/// One image (a manifest), its blobs, and the containers created from it.
struct ImageDisk {
    manifest: Digest,
    blobs: Vec<Digest>,
    containers: usize,
    /// Kept by prune: used, or its use cannot be told.
    active: bool,
}

/// Everything `df` reports, read once.
struct DiskUsage {
    images: Vec<ImageDisk>,
    blob_sizes: HashMap<Digest, u64>,
    containers: Vec<(Container, u64)>,
    volumes: Vec<(String, usize, u64)>,
    disks: Vec<(CachedDisk, usize)>,
}

impl DiskUsage {
    fn read(store: &ImageStore, usage: &Usage) -> anyhow::Result<DiskUsage> {
        let mut images = Vec::new();
        let mut blob_sizes = HashMap::new();
        let mut seen = HashSet::new();
        for record in store.records()? {
            let manifest = record.manifest.digest;
            if !seen.insert(manifest.clone()) {
                continue;
            }
            let blobs = store.image_blobs(&manifest).unwrap_or_else(|_| vec![manifest.clone()]);
            for blob in &blobs {
                let size = allocated_bytes(&store.blob_path(blob))?;
                blob_sizes.insert(blob.clone(), size);
            }
            let containers = match store.read_manifest(&manifest) {
                Ok(m) => usage.users_of(&manifest, &m.config.digest).count(),
                Err(_) => 0,
            };
            images.push(ImageDisk {
                active: reclaim::in_use(store, usage, &manifest),
                manifest,
                blobs,
                containers,
            });
        }
        let mut containers = Vec::new();
        let all = ContainerStore::open(store.root())?.list()?;
        for c in all.iter().cloned() {
            let size = allocated_bytes(&c.dir)?;
            containers.push((c, size));
        }
        let volume_store = VolumeStore::open(store.root())?;
        let mut volumes = Vec::new();
        for v in volume_store.list()? {
            let links = super::volume::users(&all, &v.name).count();
            volumes.push((v.name.clone(), links, super::volume::allocated(&v)));
        }
        let disks = super::rootfs::cache(store)
            .disks()?
            .into_iter()
            .map(|d| {
                let users = usage.disk_users(&d.path);
                (d, users)
            })
            .collect();
        Ok(DiskUsage {
            images,
            blob_sizes,
            containers,
            volumes,
            disks,
        })
    }

    fn blob_total<'a>(&self, blobs: impl Iterator<Item = &'a Digest>) -> u64 {
        let unique: HashSet<&Digest> = blobs.collect();
        unique
            .iter()
            .map(|b| self.blob_sizes.get(*b).copied().unwrap_or(0))
            .sum()
    }

    fn summary(&self) -> Vec<Summary> {
        let all_blobs = self.blob_total(self.images.iter().flat_map(|i| &i.blobs));
        let active_images: Vec<&ImageDisk> = self.images.iter().filter(|i| i.active).collect();
        let active_blobs = self.blob_total(active_images.iter().flat_map(|i| &i.blobs));
        let running = |c: &Container| c.state.is_running();
        vec![
            Summary {
                kind: "Images",
                total: self.images.len(),
                active: active_images.len(),
                size: all_blobs,
                reclaimable: all_blobs - active_blobs,
            },
            Summary {
                kind: "Containers",
                total: self.containers.len(),
                active: self.containers.iter().filter(|(c, _)| running(c)).count(),
                size: self.containers.iter().map(|(_, s)| s).sum(),
                reclaimable: self
                    .containers
                    .iter()
                    .filter(|(c, _)| !running(c))
                    .map(|(_, s)| s)
                    .sum(),
            },
            Summary {
                kind: "Local Volumes",
                total: self.volumes.len(),
                active: self.volumes.iter().filter(|v| v.1 > 0).count(),
                size: self.volumes.iter().map(|v| v.2).sum(),
                reclaimable: self.volumes.iter().filter(|v| v.1 == 0).map(|v| v.2).sum(),
            },
            Summary {
                kind: "Root disks",
                total: self.disks.len(),
                active: self.disks.iter().filter(|d| d.1 > 0).count(),
                size: self.disks.iter().map(|d| d.0.allocated).sum(),
                reclaimable: self.disks.iter().filter(|d| d.1 == 0).map(|d| d.0.allocated).sum(),
            },
        ]
    }
}

fn df(args: &DfArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(args.format.as_str(), "table" | "json"),
        "unsupported format {:?}: use table or json",
        args.format
    );
    let store = super::open_store()?;
    let usage = reclaim::usage(&store)?;
    let disk = DiskUsage::read(&store, &usage)?;
    let mut out = std::io::stdout().lock();
    if args.format == "json" {
        for s in disk.summary() {
            writeln!(out, "{}", s.json())?;
        }
        return Ok(());
    }
    if args.verbose {
        return write_verbose(&mut out, &store, &disk);
    }
    let mut rows = vec![["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
        .map(String::from)
        .to_vec()];
    for s in disk.summary() {
        rows.push(vec![
            s.kind.to_owned(),
            s.total.to_string(),
            s.active.to_string(),
            human_size(s.size),
            s.reclaimable_text(),
        ]);
    }
    write_table(&mut out, &rows)?;
    Ok(())
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// `df -v`: one table per kind, one row per object.
fn write_verbose(out: &mut impl Write, store: &ImageStore, disk: &DiskUsage) -> anyhow::Result<()> {
    writeln!(out, "Images space usage:\n")?;
    let mut rows = vec![header(&[
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
        "CONTAINERS",
    ])];
    for record in store.records()? {
        let Some(i) = disk.images.iter().find(|i| i.manifest == record.manifest.digest) else {
            continue;
        };
        let image = store.image(&i.manifest).ok();
        let others = disk.images.iter().filter(|o| o.manifest != i.manifest);
        let elsewhere: HashSet<&Digest> = others.flat_map(|o| &o.blobs).collect();
        let size = disk.blob_total(i.blobs.iter());
        let shared = disk.blob_total(i.blobs.iter().filter(|b| elsewhere.contains(b)));
        let reference = record.reference();
        rows.push(vec![
            reference.as_ref().map_or("<none>".into(), |r| r.familiar_name()),
            reference.as_ref().and_then(|r| r.tag()).unwrap_or("<none>").to_owned(),
            image
                .as_ref()
                .map_or("<unreadable>".into(), |i| i.config_digest.short().to_owned()),
            human_since(image.as_ref().and_then(|i| i.created())),
            human_size(size),
            human_size(shared),
            human_size(size - shared),
            i.containers.to_string(),
        ]);
    }
    write_table(out, &rows)?;
    writeln!(out, "\nContainers space usage:\n")?;
    let mut rows = vec![header(&["CONTAINER ID", "IMAGE", "SIZE", "CREATED", "STATUS", "NAMES"])];
    for (c, size) in &disk.containers {
        rows.push(vec![
            c.id()[..12.min(c.id().len())].to_owned(),
            c.config.image.clone(),
            human_size(*size),
            human_since(Some(c.config.created)),
            super::ps::status_text(c),
            c.config.name.clone(),
        ]);
    }
    write_table(out, &rows)?;
    writeln!(out, "\nLocal Volumes space usage:\n")?;
    let mut rows = vec![header(&["VOLUME NAME", "LINKS", "SIZE"])];
    for (name, links, size) in &disk.volumes {
        rows.push(vec![name.clone(), links.to_string(), human_size(*size)]);
    }
    write_table(out, &rows)?;
    writeln!(out, "\nRoot disks space usage:\n")?;
    let mut rows = vec![header(&["CHAIN ID", "SIZE", "CONTAINERS"])];
    for (d, users) in &disk.disks {
        let hex = d.chain_id.trim_start_matches("sha256:");
        rows.push(vec![
            hex[..12.min(hex.len())].to_owned(),
            human_size(d.allocated),
            users.to_string(),
        ]);
    }
    write_table(out, &rows)?;
    Ok(())
}

fn prune(args: &PruneArgs) -> anyhow::Result<()> {
    if !args.force && !super::prune::confirm(&warning(args))? {
        return Ok(());
    }
    let store = super::open_store()?;
    let before = store.records()?;
    let gc = store.lock_gc()?;
    let containers = ContainerStore::open(store.root())?;
    let (removed, container_bytes) = prune_containers(&containers, |_| true)?;
    let usage = reclaim::usage(&store)?;
    let images = reclaim::prune_images(&store, &gc, &usage, args.all, &before)?;
    let mut out = std::io::stdout().lock();
    if !removed.is_empty() {
        writeln!(out, "Deleted Containers:")?;
        for id in &removed {
            writeln!(out, "{id}")?;
        }
        writeln!(out)?;
    }
    let volume_bytes = if args.volumes {
        prune_volumes(&mut out, &store, &containers)?
    } else {
        0
    };
    super::prune::print_images(&mut out, &images)?;
    let total = container_bytes + images.bytes + volume_bytes;
    writeln!(out, "Total reclaimed space: {}", human_size(total))?;
    Ok(())
}

fn warning(args: &PruneArgs) -> String {
    let mut lines = vec!["WARNING! This will remove:", "  - all stopped containers"];
    if args.volumes {
        lines.push("  - all volumes not used by at least one container");
    }
    lines.push(if args.all {
        "  - all images without at least one container associated to them"
    } else {
        "  - all dangling images"
    });
    lines.push("  - all root disks no image or container needs");
    format!("{}\n", lines.join("\n"))
}

/// Removes every container that is not running and that `wanted` takes; returns
/// their ids and the bytes their directories took.
pub(super) fn prune_containers(
    store: &ContainerStore,
    wanted: impl Fn(&Container) -> bool,
) -> anyhow::Result<(Vec<String>, u64)> {
    let (mut removed, mut bytes) = (Vec::new(), 0);
    for c in store.list()? {
        if c.state.is_running() || !wanted(&c) {
            continue;
        }
        let size = allocated_bytes(&c.dir).unwrap_or(0);
        match store.remove(&c) {
            Ok(()) => {
                removed.push(c.id().to_owned());
                bytes += size;
            }
            // An --rm container that removed itself meanwhile.
            Err(_) if !c.dir.exists() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((removed, bytes))
}

/// Removes every volume no container uses; prints them and returns the bytes freed.
fn prune_volumes(out: &mut impl Write, store: &ImageStore, containers: &ContainerStore) -> anyhow::Result<u64> {
    let volumes = VolumeStore::open(store.root())?;
    let removed = super::volume::remove_unused(&volumes, containers, true)?;
    if !removed.is_empty() {
        writeln!(out, "Deleted Volumes:")?;
        for (name, _) in &removed {
            writeln!(out, "{name}")?;
        }
        writeln!(out)?;
    }
    Ok(removed.iter().map(|(_, size)| size).sum())
}
