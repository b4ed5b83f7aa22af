//! Containers: their records under the store's `containers/` directory, and everything
//! that runs one (the per-container monitor, the VMM, the agent client, logs).
//!
//! A container is a directory `containers/<id>/` holding `config.json` (written at
//! create, and again only by a rename), `state.json` (replaced atomically at every
//! transition), the writable disk `upper.img`, the log, and the sockets of a running
//! VM. A directory without `config.json` is a create that died half-way and is
//! removed by the next command.
//! There is no daemon: a running container has a monitor process (`hull` itself, see
//! [`monitor`]) that owns its VMM, writes its log and records its exit.

pub mod agent;
pub mod assets;
pub mod attach;
pub mod cidfile;
pub mod helper;
pub mod labels;
pub mod list;
pub mod logs;
pub mod monitor;
pub mod mounts;
pub mod names;
pub mod network;
pub mod proc;
pub mod programs;
pub mod prune;
pub mod ready;
pub mod resources;
pub mod spec;
pub mod tunables;
pub mod usage;
pub mod virtiofs;
pub mod vm;
pub mod volumes;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use guest_agent::protocol::ProcessSpec;
use serde::{Deserialize, Serialize};

use crate::image::digest::Digest;
use crate::image::store::fs::{write_atomic, Lock};
use proc::ProcessId;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("Renaming a container with the same name as its current name")]
    SameName,
    #[error("Neither old nor new names may be empty")]
    EmptyName,
    #[error("container {id}: {op} {path}")]
    Io {
        id: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container {id}: state file {path} is corrupt")]
    Corrupt {
        id: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Name(#[from] names::NameError),
    #[error("containers directory {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ContainerError>;

/// What `hull create` decided; never changes afterwards but for the name (`rename`,
/// which replaces the file atomically under the store's lock).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it, and its id (config digest).
    pub image: String,
    pub image_id: String,
    /// The manifest digest of that image: `rmi` and `prune` keep the image while a
    /// container uses it. Absent in records made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_manifest: Option<Digest>,
    /// The image's read-only root disk.
    pub rootfs: PathBuf,
    pub process: ProcessSpec,
    pub hostname: String,
    /// The VM's memory and vCPUs (with `--memory`, room for the guest's kernel
    /// beyond the container's limit).
    pub memory_mib: u32,
    pub vcpus: u8,
    /// What the container's processes may use inside the guest (`--memory`,
    /// `--pids-limit`, `--shm-size`, ...). Absent in records made before limits.
    #[serde(default)]
    pub limits: guest_agent::protocol::Resources,
    /// `--cpus` in billionths of a CPU (Docker's `NanoCpus`); 0 when not given.
    #[serde(default)]
    pub nano_cpus: u64,
    /// `--rm`: the monitor removes the container when it ends.
    pub auto_remove: bool,
    /// The writable layer lives in guest RAM (records of `--rm` containers made
    /// before they got a writable disk too).
    pub tmpfs_upper: bool,
    pub stop_signal: i32,
    pub stop_timeout: u32,
    /// `--log-opt max-size`: the log rotates at this size (two files are kept).
    #[serde(default = "default_log_max")]
    pub log_max_bytes: u64,
    /// `--network`.
    #[serde(default)]
    pub network: network::NetworkMode,
    /// `-p`.
    #[serde(default)]
    pub ports: Vec<network::PortMapping>,
    /// `--add-host`, in order.
    #[serde(default)]
    pub extra_hosts: Vec<network::ExtraHost>,
    /// `-v`, `--mount`, `--tmpfs`, parents before the mounts inside them.
    #[serde(default)]
    pub mounts: Vec<mounts::Mount>,
    /// The image's labels with `--label` and `--label-file` over them.
    #[serde(default)]
    pub labels: labels::Labels,
    /// `--read-only`: the container root is read-only in the guest.
    #[serde(default)]
    pub read_only: bool,
    /// `--sysctl`, in order.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
}

fn default_log_max() -> u64 {
    logs::MAX_FILE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// What changes while the container lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    pub monitor: Option<ProcessId>,
    pub vmm: Option<ProcessId>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    /// The guest's OOM killer killed a process of the container in the last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the last run failed or ended abnormally; empty otherwise.
    #[serde(default)]
    pub error: String,
    /// Where the running VM's sockets are (see [`runtime_root`]).
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Output the last run's log rotation discarded, in bytes.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// Console bytes the VMM dropped past its limit in the last run.
    #[serde(default)]
    pub console_dropped_bytes: u64,
}

impl ContainerState {
    fn created() -> ContainerState {
        ContainerState {
            status: Status::Created,
            monitor: None,
            vmm: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            oom_killed: false,
            error: String::new(),
            run_dir: None,
            log_dropped_bytes: 0,
            console_dropped_bytes: 0,
        }
    }

    pub fn is_running(&self) -> bool {
        self.status == Status::Running || (self.status == Status::Created && self.monitor.is_some())
    }
}

/// One container on disk.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub config: ContainerConfig,
    pub state: ContainerState,
}

/// The agent's vsock socket, in a VM's runtime directory.
pub const VSOCK_SOCKET: &str = "vsock.sock";

impl Container {
    pub fn id(&self) -> &str {
        &self.config.id
    }
    /// The sockets live in a short runtime directory: a Unix socket path must fit in
    /// 108 bytes, which a store under a long home directory would not allow.
    fn socket_dir(&self) -> PathBuf {
        self.state
            .run_dir
            .clone()
            .unwrap_or_else(|| runtime_root().join(&self.config.id))
    }
    pub fn vsock_path(&self) -> PathBuf {
        self.socket_dir().join(VSOCK_SOCKET)
    }
    pub fn attach_path(&self) -> PathBuf {
        self.socket_dir().join("attach.sock")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn console_path(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// passt's socket (in the runtime directory, like the other sockets).
    pub fn net_socket_path(&self) -> PathBuf {
        self.socket_dir().join("net.sock")
    }
    pub fn upper_path(&self) -> PathBuf {
        self.dir.join("upper.img")
    }
    pub fn monitor_log_path(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }
    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Re-reads the state from disk.
    pub fn reload(&mut self) -> Result<()> {
        self.state = read_json(&self.config.id, &self.state_path())?;
        Ok(())
    }

    /// Applies `change` to the on-disk state under the container's lock.
    pub fn update(&mut self, change: impl FnOnce(&mut ContainerState)) -> Result<()> {
        let id = self.config.id.clone();
        let _lock = Lock::exclusive(&self.dir.join("lock")).map_err(io_err(&id, "lock", &self.dir))?;
        self.reload()?;
        change(&mut self.state);
        write_json(&id, &self.dir, &self.state_path(), &self.state)
    }

    /// A container whose monitor died without recording the end (killed, host
    /// crash) is marked exited; its VMM, if it outlived the monitor, is killed.
    pub fn settle(&mut self) -> Result<()> {
        let dead = |p: &Option<ProcessId>| p.is_some_and(|p| !p.is_alive());
        if self.state.status == Status::Exited || !dead(&self.state.monitor) {
            return Ok(());
        }
        self.update(|s| {
            if s.status == Status::Exited || !dead(&s.monitor) {
                return;
            }
            if let Some(vmm) = s.vmm {
                vmm.signal(libc::SIGKILL);
            }
            s.status = Status::Exited;
            s.exit_code = Some(s.exit_code.unwrap_or(137));
            s.finished_at = Some(Utc::now());
            s.monitor = None;
            s.vmm = None;
            if let Some(run) = s.run_dir.take() {
                let _ = fs::remove_dir_all(run);
            }
            if s.error.is_empty() {
                s.error = "the container's monitor process died".into();
            }
        })
    }
}

/// Per-user directory for the sockets of running containers:
/// `$XDG_RUNTIME_DIR/hull`, else `/tmp/hull-<uid>`. Created private (0700, owned by
/// the user); a directory someone else planted there is refused.
pub fn runtime_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() && dir.is_dir() => dir.join("hull"),
        // SAFETY: getuid has no preconditions.
        _ => PathBuf::from(format!("/tmp/hull-{}", unsafe { libc::getuid() })),
    }
}

/// Creates the private runtime directory of container `id`.
pub fn create_run_dir(id: &str) -> io::Result<PathBuf> {
    let root = runtime_root();
    let private =
        |d: &Path| crate::image::store::fs::ensure_private_dir(d).map_err(|e| io::Error::other(e.to_string()));
    private(&root)?;
    let dir = root.join(id);
    private(&dir)?;
    Ok(dir)
}

fn io_err<'a>(id: &'a str, op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        id: id.to_owned(),
        op,
        path: path.to_owned(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(id: &str, path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(io_err(id, "read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::Corrupt {
        id: id.to_owned(),
        path: path.to_owned(),
        source,
    })
}

fn write_json<T: Serialize>(id: &str, dir: &Path, path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("container records serialize");
    write_atomic(dir, path, &bytes).map_err(io_err(id, "write", path))
}

/// The container `query` names among `all` (see [`ContainerStore::find`]).
fn find_in(all: Vec<Container>, query: &str) -> Result<Container> {
    let bare = query.strip_prefix('/').unwrap_or(query);
    if let Some(c) = all.iter().find(|c| c.config.id == query || c.config.name == bare) {
        return Ok(c.clone());
    }
    let mut by_prefix = all
        .into_iter()
        .filter(|c| !query.is_empty() && c.config.id.starts_with(query));
    match (by_prefix.next(), by_prefix.next()) {
        (Some(c), None) => Ok(c),
        _ => Err(ContainerError::NoSuchContainer(query.chars().take(140).collect())),
    }
}

/// `name` checked against Docker's rule and against the names of `existing`.
fn free_name(existing: &[Container], name: &str) -> Result<String> {
    let name = names::validate_name(name)?;
    match existing.iter().find(|c| c.config.name == name) {
        Some(c) => Err(ContainerError::NameInUse {
            name,
            id: c.config.id.clone(),
        }),
        None => Ok(name),
    }
}

/// The `containers/` directory of a store.
#[derive(Debug, Clone)]
pub struct ContainerStore {
    dir: PathBuf,
}

impl ContainerStore {
    pub fn open(store_root: &Path) -> Result<ContainerStore> {
        let dir = store_root.join("containers");
        fs::create_dir_all(&dir).map_err(|source| ContainerError::Store {
            path: dir.clone(),
            source,
        })?;
        Ok(ContainerStore { dir })
    }

    fn lock(&self) -> Result<Lock> {
        let path = self.dir.join(".lock");
        Lock::exclusive(&path).map_err(|source| ContainerError::Store { path, source })
    }

    /// Runs `f` on every container while holding the store's lock, so none is created
    /// or removed meanwhile (`volume rm` checks that a volume is unused this way).
    pub fn with_containers<T>(&self, f: impl FnOnce(&[Container]) -> T) -> Result<T> {
        let _lock = self.lock()?;
        Ok(f(&self.list()?))
    }

    /// Every container, settled, oldest first. Half-created directories older than a
    /// minute are removed.
    pub fn list(&self) -> Result<Vec<Container>> {
        let entries = fs::read_dir(&self.dir).map_err(|source| ContainerError::Store {
            path: self.dir.clone(),
            source,
        })?;
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            match self.load(&name) {
                Ok(mut c) => {
                    c.settle()?;
                    all.push(c);
                }
                Err(_) => self.remove_if_abandoned(&entry.path()),
            }
        }
        all.sort_by_key(|c| c.config.created);
        Ok(all)
    }

    fn remove_if_abandoned(&self, dir: &Path) {
        let old = fs::metadata(dir)
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default().as_secs() > 60)
            .unwrap_or(false);
        if old && !dir.join("config.json").exists() {
            let _ = fs::remove_dir_all(dir);
        }
    }

    fn load(&self, id: &str) -> Result<Container> {
        let dir = self.dir.join(id);
        let config: ContainerConfig = read_json(id, &dir.join("config.json"))?;
        let state = read_json(id, &dir.join("state.json"))?;
        Ok(Container { dir, config, state })
    }

    /// Finds a container by full id, unique id prefix, or name, as Docker does.
    pub fn find(&self, query: &str) -> Result<Container> {
        find_in(self.list()?, query)
    }

    /// Creates the container's directory and records; `prepare` fills the directory
    /// (the writable disk) before the config makes it visible.
    pub fn create(
        &self,
        mut config: ContainerConfig,
        name: Option<&str>,
        prepare: impl FnOnce(&Path) -> io::Result<()>,
    ) -> Result<Container> {
        let _lock = self.lock()?;
        let existing = self.list()?;
        let taken = |n: &str| existing.iter().find(|c| c.config.name == n);
        config.name = match name {
            Some(name) => free_name(&existing, name)?,
            None => (0..)
                .map(|attempt| names::generated_name(&config.id, attempt))
                .find(|n| taken(n).is_none())
                .expect("an unused name exists"),
        };
        let dir = self.dir.join(&config.id);
        let id = config.id.clone();
        fs::create_dir(&dir).map_err(io_err(&id, "create", &dir))?;
        let result = (|| {
            prepare(&dir).map_err(io_err(&id, "prepare", &dir))?;
            let state = ContainerState::created();
            write_json(&id, &dir, &dir.join("state.json"), &state)?;
            write_json(&id, &dir, &dir.join("config.json"), &config)?;
            Ok(Container {
                dir: dir.clone(),
                config,
                state,
            })
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Gives container `query` (id, id prefix or name) the name `new_name`, checked
    /// as `create` checks `--name`. The check and the new `config.json` happen under
    /// the store's lock, which `create` holds while it picks a name: of a rename and a
    /// create (or two renames) to one name, one wins and the other is refused. A
    /// running container is renamed too: only its record changes.
    pub fn rename(&self, query: &str, new_name: &str) -> Result<Container> {
        if query.is_empty() || new_name.is_empty() {
            return Err(ContainerError::EmptyName);
        }
        let _lock = self.lock()?;
        let existing = self.list()?;
        let mut container = find_in(existing.clone(), query)?;
        let bare = new_name.strip_prefix('/').unwrap_or(new_name);
        if bare == container.config.name {
            return Err(ContainerError::SameName);
        }
        container.config.name = free_name(&existing, new_name)?;
        let id = container.config.id.clone();
        write_json(
            &id,
            &container.dir,
            &container.dir.join("config.json"),
            &container.config,
        )?;
        Ok(container)
    }

    /// Removes a container that is not running.
    pub fn remove(&self, container: &Container) -> Result<()> {
        let _lock = self.lock()?;
        // Hide it first (config.json gone = abandoned), then delete the rest.
        let config = container.dir.join("config.json");
        match fs::remove_file(&config) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(container.id(), "remove", &config)(e)),
        }
        if let Some(run) = &container.state.run_dir {
            let _ = fs::remove_dir_all(run);
        }
        fs::remove_dir_all(&container.dir).map_err(io_err(container.id(), "remove", &container.dir))
    }
}
