//! `hull create`: make a container (its records and writable disk) without starting
//! it. `run` is `create` + `start`.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use chrono::Utc;
use hull::container::assets::{check_kvm, Assets};
use hull::container::cidfile::CidFile;
use hull::container::mounts::{self, Mount};
use hull::container::network::{self, ExtraHost, NetworkMode, PortMapping};
use hull::container::spec::{self, parse_size, Overrides};
use hull::container::volumes::VolumeStore;
use hull::container::{labels, names, resources, tunables, vm, Container, ContainerConfig, ContainerStore};
use hull::image::manifest::Platform;
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
    /// Set meta data on a container (KEY=VALUE, or KEY for an empty value)
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long)]
    pub label_file: Vec<std::path::PathBuf>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<std::path::PathBuf>,
    /// Signal to stop the container (default: the image's, else SIGTERM)
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the container to stop before killing it (default 10)
    #[arg(long, allow_negative_numbers = true)]
    pub stop_timeout: Option<i64>,
    /// Add a host device to the container (refused: host devices never enter a VM)
    #[arg(long)]
    pub device: Vec<String>,
    /// GPU devices to add to the container (refused: host devices never enter a VM)
    #[arg(long)]
    pub gpus: Option<String>,
    /// Pull image before running: always, missing or never
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Set platform if server is multi-platform capable: only the host's
    #[arg(long)]
    pub platform: Option<String>,
    /// Mount the container's root filesystem as read only (volumes and tmpfs mounts
    /// stay writable)
    #[arg(long)]
    pub read_only: bool,
    /// Add additional groups to join (names from the container's /etc/group, or
    /// numbers)
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Sysctl options (namespaced ones: kernel.shm*, kernel.msg*, kernel.sem,
    /// fs.mqueue.*, net.*)
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Ulimit options: NAME=SOFT[:HARD] (-1 for unlimited)
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Image to run, by reference or id
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `--pull`: when `run` and `create` pull the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullPolicy {
    Always,
    Missing,
    Never,
}

impl PullPolicy {
    fn parse(s: &str) -> anyhow::Result<PullPolicy> {
        Ok(match s {
            "always" => PullPolicy::Always,
            "missing" => PullPolicy::Missing,
            "never" => PullPolicy::Never,
            _ => bail!("invalid pull option: '{s}': must be one of \"always\", \"missing\" or \"never\""),
        })
    }
}

/// Finds the image, pulling it when it is a reference not in the store (as `docker
/// run` does), or every time with `--pull always`.
fn image_for(store: &ImageStore, query: &str, policy: PullPolicy) -> anyhow::Result<Image> {
    super::check_image_query(query)?;
    let reference = Reference::parse(query).ok();
    if let (PullPolicy::Always, Some(reference)) = (policy, &reference) {
        super::pull::pull_quietly(store, reference)?;
        return Ok(store.find(query)?);
    }
    match (store.find(query), reference) {
        (Ok(image), _) => Ok(image),
        (Err(StoreError::NoSuchImage(_)), Some(reference)) if policy == PullPolicy::Never => {
            bail!("No such image: {}", reference.familiar())
        }
        (Err(StoreError::NoSuchImage(_)), Some(reference)) => {
            eprintln!("Unable to find image '{}' locally", reference.familiar());
            super::pull::pull_quietly(store, &reference)?;
            Ok(store.find(query)?)
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// `--platform`: hull runs the host's platform only.
fn check_platform(platform: Option<&str>) -> anyhow::Result<()> {
    let Some(text) = platform else { return Ok(()) };
    let host = Platform::host();
    let wanted =
        Platform::parse(text).with_context(|| format!("invalid platform {text:?}: expected os/arch[/variant]"))?;
    if !host.matches(&wanted) {
        bail!("platform {wanted} is not supported: hull runs {host} containers only (the host's)");
    }
    Ok(())
}

/// `--device` and `--gpus`, refused: the VM is the container's boundary.
fn refuse_devices(args: &CreateArgs) -> anyhow::Result<()> {
    let flag = if !args.device.is_empty() {
        "--device"
    } else if args.gpus.is_some() {
        "--gpus"
    } else {
        return Ok(());
    };
    bail!("{flag} is not supported: each container runs in its own VM, and host devices are not passed into guests")
}

/// `--stop-timeout`: seconds, 10 by default.
fn stop_timeout(args: &CreateArgs) -> anyhow::Result<u32> {
    match args.stop_timeout {
        None => Ok(10),
        Some(t) => {
            u32::try_from(t).map_err(|_| anyhow::anyhow!("invalid stop timeout {t}: it must be 0 or more seconds"))
        }
    }
}

/// Checks the flags and the host, then creates the container.
pub fn create(args: &CreateArgs) -> anyhow::Result<Container> {
    refuse_devices(args)?;
    let cidfile = args.cidfile.as_deref().map(CidFile::claim).transpose()?;
    let c = create_container(args)?;
    if let Some(cidfile) = cidfile {
        cidfile.write(c.id())?;
    }
    Ok(c)
}

fn create_container(args: &CreateArgs) -> anyhow::Result<Container> {
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
    let own_labels = labels::from_flags(&args.label_file, &args.label)?;
    let pull = PullPolicy::parse(&args.pull)?;
    check_platform(args.platform.as_deref())?;
    let stop_signal = args.stop_signal.as_deref().map(super::stop::signal_arg).transpose()?;
    let stop_timeout = stop_timeout(args)?;
    let ulimits = args
        .ulimit
        .iter()
        .map(|u| tunables::parse_ulimit(u))
        .collect::<Result<Vec<_>, _>>()?;
    let sysctls = args
        .sysctl
        .iter()
        .map(|s| tunables::parse_sysctl(s))
        .collect::<Result<Vec<_>, _>>()?;
    check_kvm().map_err(anyhow::Error::msg)?;
    Assets::locate()?;

    let store = super::open_store()?;
    // Until the container is recorded, `rmi` and `prune` must not take its image or
    // root disk: they wait for this pin.
    let _pin = store.pin()?;
    let image = image_for(&store, &args.image, pull)?;
    let overrides = Overrides {
        entrypoint: args.entrypoint.clone(),
        cmd: args.command.clone(),
        env: spec::expand_host_env(&env_entries),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        stdin: args.interactive,
    };
    let mut process = spec::merge(&image.config, &overrides)?;
    process.group_add = args.group_add.clone();
    process.ulimits = ulimits;
    let labels = labels::merged(&image.config, own_labels);
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
        stop_signal: stop_signal.unwrap_or_else(|| spec::stop_signal(&image.config)),
        stop_timeout,
        log_max_bytes: parse_log_opts(&args.log_opt)?,
        network,
        ports,
        extra_hosts,
        mounts,
        labels,
        read_only: args.read_only,
        sysctls,
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
