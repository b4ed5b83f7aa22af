//! A container's mounts: host directories (`-v /src:/dst`, `--mount type=bind`), named
//! volumes (`-v NAME:/dst`, `--mount type=volume`) and tmpfs mounts (`--tmpfs`,
//! `--mount type=tmpfs`), checked at create and recorded in the config.
//!
//! Every bind mount and volume reaches the guest as one virtio-fs device served by its
//! own `virtiofsd` (see [`super::virtiofs`]); the monitor tells the agent where to mount
//! what over its control connection (`HostMessage::Configure`), before the main process
//! starts; no user string goes on the guest's kernel command line.

use std::io;
use std::path::{Path, PathBuf};

use guest_agent::mounts::{self as wire, MountArg};
pub use guest_agent::mounts::{TmpfsOptions, MAX_MOUNTS};
use serde::{Deserialize, Serialize};

use super::names;
use super::spec::parse_size;

/// Most bind mounts and volumes one container may have: each is a virtio-fs device,
/// and the VM has 19 device slots of which the disks, vsock, rng, balloon and network take 6.
pub const MAX_SHARED_DIRS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("invalid volume specification {spec:?}: {reason}")]
    Volume { spec: String, reason: String },
    #[error("invalid --mount {spec:?}: {reason}")]
    Mount { spec: String, reason: String },
    #[error("invalid --tmpfs {spec:?}: {reason}")]
    Tmpfs { spec: String, reason: String },
    #[error("bind source path does not exist: {0:?} (hull does not create host directories)")]
    MissingSource(PathBuf),
    #[error("bind source path is not a directory: {0:?} (only directories can be shared with a container)")]
    NotADirectory(PathBuf),
    #[error("bind source path {path:?}")]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Duplicate mount point: {0}")]
    Duplicate(String),
    #[error("too many mounts ({0}): at most {MAX_MOUNTS}")]
    TooMany(usize),
    #[error("too many bind mounts and volumes ({0}): at most {MAX_SHARED_DIRS}")]
    TooManyShared(usize),
}

/// One mount as the config records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Mount {
    /// A host directory, canonicalized at create.
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    /// A named volume; `source` is its data directory in the store.
    Volume {
        name: String,
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        #[serde(default)]
        options: TmpfsOptions,
    },
}

impl Mount {
    pub fn target(&self) -> &str {
        match self {
            Mount::Bind { target, .. } | Mount::Volume { target, .. } | Mount::Tmpfs { target, .. } => target,
        }
    }

    /// The host directory shared with the guest, for bind mounts and volumes.
    pub fn shared_dir(&self) -> Option<&Path> {
        match self {
            Mount::Bind { source, .. } | Mount::Volume { source, .. } => Some(source),
            Mount::Tmpfs { .. } => None,
        }
    }

    pub fn read_only(&self) -> bool {
        match self {
            Mount::Bind { read_only, .. } | Mount::Volume { read_only, .. } => *read_only,
            Mount::Tmpfs { .. } => false,
        }
    }

    pub fn volume_name(&self) -> Option<&str> {
        match self {
            Mount::Volume { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// Where a requested mount comes from, before it is checked against the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Host(PathBuf),
    Volume(String),
    Tmpfs(TmpfsOptions),
}

/// One `-v`, `--mount` or `--tmpfs` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    pub source: Source,
    /// Normalized: absolute, no `..`, not `/`.
    pub target: String,
    pub read_only: bool,
}

/// `-v SOURCE:DESTINATION[:ro|rw]`: an absolute SOURCE is a host directory, anything
/// else the name of a volume (created on first use).
pub fn parse_volume_flag(spec: &str) -> Result<MountRequest, MountError> {
    let bad = |reason: String| MountError::Volume {
        spec: spec.to_owned(),
        reason,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, options) = match parts[..] {
        [_] => {
            return Err(bad(
                "anonymous volumes are not supported: name the volume (NAME:/path)".into()
            ))
        }
        [s, t] => (s, t, None),
        [s, t, o] => (s, t, Some(o)),
        _ => return Err(bad("expected SOURCE:DESTINATION[:OPTIONS]".into())),
    };
    let read_only = match options {
        Some(o) => access_mode(o).map_err(bad)?,
        None => false,
    };
    Ok(MountRequest {
        source: host_or_volume(source).map_err(bad)?,
        target: wire::normalize_target(target).map_err(bad)?,
        read_only,
    })
}

fn access_mode(options: &str) -> Result<bool, String> {
    let mut mode = None;
    for option in options.split(',') {
        let ro = match option {
            "ro" => true,
            "rw" => false,
            other => return Err(format!("unsupported option {other:?}: only ro and rw")),
        };
        if mode.is_some_and(|m| m != ro) {
            return Err("both ro and rw given".into());
        }
        mode = Some(ro);
    }
    Ok(mode.unwrap_or(false))
}

fn host_or_volume(source: &str) -> Result<Source, String> {
    if source.starts_with('/') {
        return Ok(Source::Host(PathBuf::from(source)));
    }
    volume_name(source).map(Source::Volume)
}

fn volume_name(name: &str) -> Result<String, String> {
    if names::follows_name_rule(name) {
        return Ok(name.to_owned());
    }
    let shown: String = name.chars().take(64).collect();
    Err(format!(
        "{shown:?} includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are \
         allowed; a host directory must be an absolute path"
    ))
}

/// What one `--mount` flag said, key by key.
#[derive(Default)]
struct MountFields<'a> {
    kind: Option<&'a str>,
    source: Option<&'a str>,
    target: Option<&'a str>,
    read_only: bool,
    tmpfs_size: Option<&'a str>,
    tmpfs_mode: Option<&'a str>,
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=...]
/// [,tmpfs-mode=...]`, Docker's syntax (without CSV quoting).
pub fn parse_mount_flag(spec: &str) -> Result<MountRequest, MountError> {
    let bad = |reason: String| MountError::Mount {
        spec: spec.to_owned(),
        reason,
    };
    let fields = mount_fields(spec).map_err(bad)?;
    let target = wire::normalize_target(fields.target.ok_or_else(|| bad("target is required".into()))?).map_err(bad)?;
    let kind = fields.kind.unwrap_or("volume");
    if kind != "tmpfs" && (fields.tmpfs_size.is_some() || fields.tmpfs_mode.is_some()) {
        return Err(bad(format!("tmpfs options are not allowed with type={kind}")));
    }
    let source = match (kind, fields.source) {
        ("bind", Some(s)) if s.starts_with('/') => Source::Host(PathBuf::from(s)),
        ("bind", Some(_)) => return Err(bad("a bind source must be an absolute path".into())),
        ("volume", Some(s)) => Source::Volume(volume_name(s).map_err(bad)?),
        ("bind" | "volume", None) => return Err(bad(format!("source is required when type is {kind}"))),
        ("tmpfs", Some(_)) => return Err(bad("source is not allowed when type is tmpfs".into())),
        ("tmpfs", None) if fields.read_only => return Err(bad("readonly is not supported with type=tmpfs".into())),
        ("tmpfs", None) => Source::Tmpfs(tmpfs_fields(&fields).map_err(bad)?),
        (other, _) => return Err(bad(format!("type {other:?} is not supported: bind, volume or tmpfs"))),
    };
    Ok(MountRequest {
        source,
        target,
        read_only: fields.read_only,
    })
}

fn mount_fields(spec: &str) -> Result<MountFields<'_>, String> {
    let mut fields = MountFields::default();
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let value_of = || {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{key} needs a value"))
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => fields.kind = Some(value_of()?),
            "source" | "src" => fields.source = Some(value_of()?),
            "target" | "destination" | "dst" => fields.target = Some(value_of()?),
            "readonly" | "ro" => fields.read_only = boolean(key, value)?,
            "tmpfs-size" => fields.tmpfs_size = Some(value_of()?),
            "tmpfs-mode" => fields.tmpfs_mode = Some(value_of()?),
            _ => {
                let shown: String = key.chars().take(64).collect();
                return Err(format!("unsupported field {shown:?}"));
            }
        }
    }
    Ok(fields)
}

fn boolean(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("1" | "true") => Ok(true),
        Some("0" | "false") => Ok(false),
        Some(v) => Err(format!(
            "invalid value for {key}: {:?}",
            v.chars().take(64).collect::<String>()
        )),
    }
}

fn tmpfs_fields(fields: &MountFields) -> Result<TmpfsOptions, String> {
    let mut list = Vec::new();
    if let Some(size) = fields.tmpfs_size {
        list.push(format!("size={size}"));
    }
    if let Some(mode) = fields.tmpfs_mode {
        list.push(format!("mode={mode}"));
    }
    TmpfsOptions::parse(&list.join(","), parse_size)
}

/// `--tmpfs DESTINATION[:OPTIONS]`, the options as `size=64m,mode=1777,exec`.
pub fn parse_tmpfs_flag(spec: &str) -> Result<MountRequest, MountError> {
    let bad = |reason: String| MountError::Tmpfs {
        spec: spec.to_owned(),
        reason,
    };
    let (target, options) = spec.split_once(':').unwrap_or((spec, ""));
    Ok(MountRequest {
        source: Source::Tmpfs(TmpfsOptions::parse(options, parse_size).map_err(bad)?),
        target: wire::normalize_target(target).map_err(bad)?,
        read_only: false,
    })
}

/// Checks the requests together and against the host: limits, duplicate mount
/// points, bind sources (which must be existing directories, recorded canonical).
/// `volume_dir` names a volume's data directory. Mounts come back parents first.
pub fn plan(requests: Vec<MountRequest>, volume_dir: impl Fn(&str) -> PathBuf) -> Result<Vec<Mount>, MountError> {
    if requests.len() > MAX_MOUNTS {
        return Err(MountError::TooMany(requests.len()));
    }
    let shared = requests
        .iter()
        .filter(|r| !matches!(r.source, Source::Tmpfs(_)))
        .count();
    if shared > MAX_SHARED_DIRS {
        return Err(MountError::TooManyShared(shared));
    }
    for (i, r) in requests.iter().enumerate() {
        if requests[..i].iter().any(|earlier| earlier.target == r.target) {
            return Err(MountError::Duplicate(r.target.clone()));
        }
    }
    let mut mounts = requests
        .into_iter()
        .map(|r| resolve(r, &volume_dir))
        .collect::<Result<Vec<_>, _>>()?;
    // A mount inside another one is made after it.
    mounts.sort_by_key(|m| m.target().matches('/').count());
    Ok(mounts)
}

fn resolve(request: MountRequest, volume_dir: &impl Fn(&str) -> PathBuf) -> Result<Mount, MountError> {
    let MountRequest {
        source,
        target,
        read_only,
    } = request;
    Ok(match source {
        Source::Host(path) => Mount::Bind {
            source: canonical_dir(&path)?,
            target,
            read_only,
        },
        Source::Volume(name) => Mount::Volume {
            source: volume_dir(&name),
            name,
            target,
            read_only,
        },
        Source::Tmpfs(options) => Mount::Tmpfs { target, options },
    })
}

/// The canonical path of an existing host directory (virtiofsd shares directories
/// only).
pub fn canonical_dir(path: &Path) -> Result<PathBuf, MountError> {
    let canonical = std::fs::canonicalize(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => MountError::MissingSource(path.to_owned()),
        _ => MountError::Source {
            path: path.to_owned(),
            source,
        },
    })?;
    if !canonical.is_dir() {
        return Err(MountError::NotADirectory(path.to_owned()));
    }
    Ok(canonical)
}

/// The guest's view of the mounts, shared directories numbered in order (their
/// virtio-fs tags are `hullfs0`, `hullfs1`, ...).
pub fn mount_args(mounts: &[Mount]) -> Vec<MountArg> {
    let mut shared = 0;
    mounts
        .iter()
        .map(|m| match m {
            Mount::Tmpfs { target, options } => MountArg::Tmpfs {
                target: target.clone(),
                options: *options,
            },
            _ => {
                shared += 1;
                MountArg::Shared {
                    tag: wire::tag(shared - 1),
                    read_only: m.read_only(),
                    target: m.target().to_owned(),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volumes(name: &str) -> PathBuf {
        PathBuf::from("/store/volumes").join(name).join("_data")
    }

    #[test]
    fn volume_flags_parse_like_docker() {
        let r = parse_volume_flag("/srv/data:/data:ro").unwrap();
        assert_eq!(r.source, Source::Host("/srv/data".into()));
        assert_eq!((r.target.as_str(), r.read_only), ("/data", true));
        let r = parse_volume_flag("vol1:/v/./x/").unwrap();
        assert_eq!(r.source, Source::Volume("vol1".into()));
        assert_eq!((r.target.as_str(), r.read_only), ("/v/x", false));
        assert!(!parse_volume_flag("/a:/b:rw").unwrap().read_only);
        for bad in [
            "/data",
            "/a:/b:z",
            "/a:/b:ro,rw",
            "/a:/b:",
            "/a:/b:ro:x",
            "/a:relative",
            "/a:/",
            "/a:/x/../y",
            "./dir:/x",
            "x:/y",
            "bad name:/y",
            ":/y",
        ] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags_parse_like_docker() {
        let r = parse_mount_flag("type=bind,source=/srv,target=/data,readonly").unwrap();
        assert_eq!(
            (r.source, r.target.as_str(), r.read_only),
            (Source::Host("/srv".into()), "/data", true)
        );
        let r = parse_mount_flag("src=vol1,dst=/v,ro=false").unwrap();
        assert_eq!((r.source, r.read_only), (Source::Volume("vol1".into()), false));
        let r = parse_mount_flag("type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        let Source::Tmpfs(o) = r.source else { panic!("tmpfs") };
        assert_eq!((o.size, o.mode, o.noexec), (Some(64 << 20), Some(0o1770), true));
        for bad in [
            "type=bind,target=/x",
            "type=bind,source=rel,target=/x",
            "type=bind,source=/x",
            "type=volume,target=/x",
            "type=volume,source=/abs,target=/x",
            "type=tmpfs,source=/x,target=/x",
            "type=tmpfs,target=/x,readonly",
            "type=tmpfs,target=/x,tmpfs-size=lots",
            "type=bind,source=/x,target=/y,tmpfs-size=1m",
            "type=npipe,source=/x,target=/y",
            "type=bind,source=/x,target=/y,bind-propagation=shared",
            "type=bind,source=/x,target=/y,readonly=maybe",
            "type=bind,source=,target=/y",
            "",
        ] {
            assert!(parse_mount_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tmpfs_flags_take_only_known_options() {
        let r = parse_tmpfs_flag("/scratch:size=64m,mode=1777").unwrap();
        let Source::Tmpfs(o) = r.source else { panic!("tmpfs") };
        assert_eq!((o.size, o.mode), (Some(64 << 20), Some(0o1777)));
        assert_eq!(parse_tmpfs_flag("/run").unwrap().target, "/run");
        for bad in ["/x:uid=0", "/x:size=1t", "relative", "/", "/x:ro"] {
            assert!(parse_tmpfs_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_check_sources_duplicates_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let host = |p: &Path, t: &str| MountRequest {
            source: Source::Host(p.to_owned()),
            target: t.into(),
            read_only: false,
        };
        let tmpfs = |t: &str| MountRequest {
            source: Source::Tmpfs(TmpfsOptions::default()),
            target: t.into(),
            read_only: false,
        };
        let mounts = plan(vec![tmpfs("/a/b"), host(dir.path(), "/a")], volumes).unwrap();
        assert_eq!(mounts[0].target(), "/a", "parents first");
        assert_eq!(
            mounts[0].shared_dir(),
            Some(std::fs::canonicalize(dir.path()).unwrap().as_path())
        );
        assert!(matches!(
            plan(vec![host(&dir.path().join("nope"), "/x")], volumes),
            Err(MountError::MissingSource(_))
        ));
        assert!(matches!(
            plan(vec![host(&file, "/x")], volumes),
            Err(MountError::NotADirectory(_))
        ));
        assert!(matches!(
            plan(vec![tmpfs("/x"), tmpfs("/x")], volumes),
            Err(MountError::Duplicate(_))
        ));
        let many: Vec<_> = (0..=MAX_MOUNTS).map(|i| tmpfs(&format!("/t{i}"))).collect();
        assert!(matches!(plan(many, volumes), Err(MountError::TooMany(_))));
        let shared: Vec<_> = (0..=MAX_SHARED_DIRS)
            .map(|i| host(dir.path(), &format!("/s{i}")))
            .collect();
        assert!(matches!(plan(shared, volumes), Err(MountError::TooManyShared(_))));
    }

    #[test]
    fn mount_args_number_shared_directories_in_order() {
        let mounts = vec![
            Mount::Volume {
                name: "v1".into(),
                source: volumes("v1"),
                target: "/v".into(),
                read_only: false,
            },
            Mount::Tmpfs {
                target: "/t".into(),
                options: TmpfsOptions::default(),
            },
            Mount::Bind {
                source: "/srv".into(),
                target: "/my data".into(),
                read_only: true,
            },
        ];
        let args = mount_args(&mounts);
        let tags: Vec<_> = args
            .iter()
            .map(|a| match a {
                MountArg::Shared { tag, read_only, .. } => format!("{tag}:{read_only}"),
                MountArg::Tmpfs { .. } => "tmpfs".into(),
            })
            .collect();
        assert_eq!(tags, ["hullfs0:false", "tmpfs", "hullfs1:true"]);
        assert_eq!(args[2].target(), "/my data");
        // What the agent receives passes its own checks unchanged.
        assert_eq!(guest_agent::mounts::validate_all(args.clone()).unwrap(), args);
        let json = serde_json::to_string(&mounts).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Mount>>(&json).unwrap(), mounts);
    }
}
