//! `hull create`: make a container (its records and writable disk) without starting
//! it. `run` is `create` + `start`.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use chrono::Utc;
use hull::container::assets::{check_kvm, Assets};
use hull::container::mounts::{self, Mount};
use hull::container::network::{self, ExtraHost, NetworkMode, PortMapping};
use hull::container::spec::{self, parse_size, Overrides};
use hull::container::volumes::VolumeStore;
use hull::container::{names, resources, vm, Container, ContainerConfig, ContainerStore};
use hull::image::reference::Reference;
use hull::image::store::{Image, ImageStore, StoreError};

/// The flags `create` and `run` share.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Keep STDIN open even if not attached
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (NAME=VALUE, or NAME to take the host's value)
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long)]
    pub env_file: Vec<std::path::PathBuf>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Memory limit (e.g. 512m, 1g); the VM gets this plus room for its kernel.
    /// Default: no limit, in a VM of 1 GiB that is backed only where it is used
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory plus swap limit, -1 for no limit (needs --memory; the guest has no swap)
    #[arg(long, allow_negative_numbers = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs: as many vCPUs, rounded up, with a quota for a fraction.
    /// Default: as many as the host has
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Size of /dev/shm (default 64m)
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    /// (hull's guest agent always does this)
    #[arg(long)]
    pub init: bool,
    /// Log driver options: max-size=SIZE (rotate the log at SIZE, e.g. 10m; two files
    /// are kept; default 8m)
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Connect the container to a network: the default user-mode network (also
    /// `bridge`), or `none` for loopback only; HULL_NETWORK sets the default
    #[arg(
        long = "network",
        visible_alias = "net",
        env = "HULL_NETWORK",
        default_value = "bridge"
    )]
    pub network: String,
    /// Publish a container's port to the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]
    #[arg(short, long = "publish")]
    pub publish: Vec<String>,
    /// Add a line to /etc/hosts: NAME:IP, or NAME:host-gateway, which also lets the
    /// container reach the host's loopback through the gateway (denied by default)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Bind mount a host directory or mount a named volume (created if missing):
    /// SOURCE:DESTINATION[:ro|rw], SOURCE an absolute host path or a volume name
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount: type=bind|volume|tmpfs,source=SRC,target=DST, and
    /// optionally readonly, tmpfs-size=SIZE, tmpfs-mode=MODE
    #[arg(long = "mount")]
    pub mount: Vec<String>,
    /// Mount a tmpfs: DESTINATION[:size=SIZE,mode=MODE,exec,suid,dev,...]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Image to run, by reference or id
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Finds the image, pulling it when it is a reference not in the store (as `docker
/// run` does).
fn image_for(store: &ImageStore, query: &str) -> anyhow::Result<Image> {
    super::check_image_query(query)?;
    match store.find(query) {
        Ok(image) => Ok(image),
        Err(StoreError::NoSuchImage(_)) if Reference::parse(query).is_ok() => {
            let reference = Reference::parse(query)?;
            eprintln!("Unable to find image '{}' locally", reference.familiar());
            super::pull::pull_quietly(store, &reference)?;
            Ok(store.find(query)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks the flags and the host, then creates the container.
pub fn create(args: &CreateArgs) -> anyhow::Result<Container> {
    if let Some(name) = &args.name {
        names::validate_name(name)?;
    }
    if args.tty && args.interactive && !std::io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let resources = resources::plan(&resource_flags(args), resources::host_cpus())?;
    let mut env_entries = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("open {}", file.display()))?;
        env_entries.extend(spec::parse_env_file(&text));
    }
    env_entries.extend(args.env.iter().cloned());
    let network = NetworkMode::parse(&args.network)?;
    let ports = args
        .publish
        .iter()
        .map(|p| PortMapping::parse(p))
        .collect::<Result<Vec<_>, _>>()?;
    let extra_hosts = args
        .add_host
        .iter()
        .map(|h| ExtraHost::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    network::check(network, &ports, &extra_hosts)?;
    let mounts = plan_mounts(args)?;
    check_kvm().map_err(anyhow::Error::msg)?;
    Assets::locate()?;

    let store = super::open_store()?;
    // Until the container is recorded, `rmi` and `prune` must not take its image or
    // root disk: they wait for this pin.
    let _pin = store.pin()?;
    let image = image_for(&store, &args.image)?;
    let overrides = Overrides {
        entrypoint: args.entrypoint.clone(),
        cmd: args.command.clone(),
        env: spec::expand_host_env(&env_entries),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        stdin: args.interactive,
    };
    let process = spec::merge(&image.config, &overrides)?;
    let rootfs = super::rootfs::cache(&store).ensure(&super::rootfs::layer_inputs(&store, &image)?)?;
    let id = names::new_id()?;
    let hostname = match &args.hostname {
        Some(h) if valid_hostname(h) => h.clone(),
        Some(h) => bail!("invalid hostname {h:?}"),
        None => id[..12].to_owned(),
    };
    let config = ContainerConfig {
        id,
        name: String::new(),
        created: Utc::now(),
        image: args.image.clone(),
        image_id: image.config_digest.to_string(),
        image_manifest: Some(image.manifest_digest.clone()),
        rootfs: rootfs.path,
        process,
        hostname,
        memory_mib: resources.vm_memory_mib,
        vcpus: resources.vcpus,
        nano_cpus: resources.nano_cpus,
        limits: resources.limits,
        auto_remove: args.rm,
        // `--rm` too gets a writable disk: the 6.1 guest kernel's tmpfs has no `user.*`
        // xattrs, which programs (and CPython's tests) use on the container root.
        tmpfs_upper: false,
        stop_signal: spec::stop_signal(&image.config),
        stop_timeout: 10,
        log_max_bytes: parse_log_opts(&args.log_opt)?,
        network,
        ports,
        extra_hosts,
        mounts,
    };
    let containers = ContainerStore::open(store.root())?;
    let volumes = VolumeStore::open(store.root())?;
    let tmpfs = config.tmpfs_upper;
    let wanted: Vec<String> = config
        .mounts
        .iter()
        .filter_map(|m| m.volume_name())
        .map(String::from)
        .collect();
    // Under the containers' lock: a `volume rm` cannot slip in between.
    Ok(containers.create(config, args.name.as_deref(), |dir| {
        for name in &wanted {
            volumes.create(Some(name)).map_err(std::io::Error::other)?;
        }
        if tmpfs {
            Ok(())
        } else {
            vm::create_upper_disk(&dir.join("upper.img"), vm::UPPER_DISK_BYTES)
        }
    })?)
}

/// `-v`, `--mount` and `--tmpfs`, checked together and against the host (bind
/// sources must be existing directories; virtiofsd must be installed to share them).
fn plan_mounts(args: &CreateArgs) -> anyhow::Result<Vec<Mount>> {
    let mut requests = Vec::new();
    for spec in &args.volume {
        requests.push(mounts::parse_volume_flag(spec)?);
    }
    for spec in &args.mount {
        requests.push(mounts::parse_mount_flag(spec)?);
    }
    for spec in &args.tmpfs {
        requests.push(mounts::parse_tmpfs_flag(spec)?);
    }
    let store_root = std::path::absolute(ImageStore::default_root())?;
    let planned = mounts::plan(requests, |name| VolumeStore::data_dir(&store_root, name))?;
    if planned.iter().any(|m| m.shared_dir().is_some()) {
        hull::container::virtiofs::find_virtiofsd()?;
    }
    Ok(planned)
}

/// `--log-opt max-size=SIZE` (bytes, or with k, m, g), between 4 KiB and 1 GiB.
fn parse_log_opts(opts: &[String]) -> anyhow::Result<u64> {
    let mut max = hull::container::logs::MAX_FILE;
    for opt in opts {
        let Some(size) = opt.strip_prefix("max-size=") else {
            bail!("unsupported log option {opt:?}: only max-size=SIZE");
        };
        max = parse_size(size).with_context(|| format!("invalid log max-size {size:?}"))?;
        if !(4 << 10..=1 << 30).contains(&max) {
            bail!("log max-size {size:?} out of range (4k to 1g)");
        }
    }
    Ok(max)
}

fn resource_flags(args: &CreateArgs) -> resources::ResourceFlags {
    resources::ResourceFlags {
        memory: args.memory.clone(),
        memory_swap: args.memory_swap.clone(),
        cpus: args.cpus,
        cpuset_cpus: args.cpuset_cpus.clone(),
        pids_limit: args.pids_limit,
        shm_size: args.shm_size.clone(),
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty() && h.len() <= 63 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub fn run(args: CreateArgs) -> anyhow::Result<()> {
    let c = create(&args)?;
    println!("{}", c.id());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_parse() {
        assert_eq!(parse_log_opts(&[]).unwrap(), 8 << 20);
        assert_eq!(parse_log_opts(&["max-size=1m".into()]).unwrap(), 1 << 20);
        assert_eq!(parse_log_opts(&["max-size=64k".into()]).unwrap(), 64 << 10);
        assert!(parse_log_opts(&["max-size=1".into()]).is_err());
        assert!(parse_log_opts(&["max-size=2t".into()]).is_err());
        assert!(parse_log_opts(&["max-file=3".into()]).is_err());
    }
}
