//! Volumes and tmpfs mounts as the host sends them to the agent (`HostMessage::Configure`,
//! over the control connection, never on the kernel command line) and the checks the
//! agent applies before it mounts anything: the agent treats every mount as hostile
//! input, refuses a malformed one with a reason, and nothing here panics.

use serde::{Deserialize, Serialize};

/// Most mounts one container may have.
pub const MAX_MOUNTS: usize = 16;
/// Longest mount point, in bytes, after normalization.
pub const MAX_TARGET_BYTES: usize = 1024;
/// The virtio-fs tag of the `index`-th shared directory of a container.
pub const TAG_PREFIX: &str = "hullfs";

/// One mount the agent makes in the container root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountArg {
    /// A host directory (bind mount or volume) shared through a virtio-fs device.
    Shared {
        tag: String,
        read_only: bool,
        target: String,
    },
    /// A fresh tmpfs.
    Tmpfs { target: String, options: TmpfsOptions },
}

/// The options of a tmpfs mount. The defaults are Docker's: `noexec,nosuid,nodev`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsOptions {
    /// `size=`, in bytes; the kernel's default (half the guest's RAM) when absent.
    pub size: Option<u64>,
    /// `mode=` of the mount's root directory.
    pub mode: Option<u32>,
    pub noexec: bool,
    pub nosuid: bool,
    pub nodev: bool,
}

impl Default for TmpfsOptions {
    fn default() -> Self {
        TmpfsOptions {
            size: None,
            mode: None,
            noexec: true,
            nosuid: true,
            nodev: true,
        }
    }
}

impl TmpfsOptions {
    /// Parses a comma-separated list (`size=64m,mode=1777,exec`); sizes go through
    /// `parse_size` (the host takes units, the agent bytes). Anything outside
    /// size, mode, rw and the exec/suid/dev pairs is refused.
    pub fn parse(list: &str, parse_size: impl Fn(&str) -> Option<u64>) -> Result<TmpfsOptions, String> {
        let mut options = TmpfsOptions::default();
        for option in list.split(',').filter(|o| !o.is_empty()) {
            match option.split_once('=') {
                Some(("size", v)) => {
                    let size = parse_size(v).filter(|s| *s > 0);
                    options.size = Some(size.ok_or_else(|| format!("invalid tmpfs size {v:?}"))?);
                }
                Some(("mode", v)) => {
                    let mode = u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o7777);
                    options.mode = Some(mode.ok_or_else(|| format!("invalid tmpfs mode {v:?}: an octal mode"))?);
                }
                Some(_) => return Err(unsupported(option)),
                None => options.set_flag(option)?,
            }
        }
        Ok(options)
    }

    fn set_flag(&mut self, flag: &str) -> Result<(), String> {
        match flag {
            "rw" => {}
            "noexec" | "exec" => self.noexec = flag == "noexec",
            "nosuid" | "suid" => self.nosuid = flag == "nosuid",
            "nodev" | "dev" => self.nodev = flag == "nodev",
            _ => return Err(unsupported(flag)),
        }
        Ok(())
    }

    /// The data string tmpfs itself takes (`size=N,mode=OOOO`); the flags are mount
    /// flags, not data.
    pub fn data(&self) -> String {
        let mut data = Vec::new();
        if let Some(size) = self.size {
            data.push(format!("size={size}"));
        }
        if let Some(mode) = self.mode {
            data.push(format!("mode={mode:04o}"));
        }
        data.join(",")
    }
}

fn unsupported(option: &str) -> String {
    let shown: String = option.chars().take(64).collect();
    format!("unsupported tmpfs option {shown:?}: only size, mode, rw, exec, noexec, suid, nosuid, dev and nodev")
}

impl std::fmt::Display for TmpfsOptions {
    /// The whole list, as the host writes it and `parse` reads it back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let flag = |on: bool, name: &'static str| if on { name } else { &name[2..] };
        let data = self.data();
        if !data.is_empty() {
            write!(f, "{data},")?;
        }
        write!(
            f,
            "{},{},{}",
            flag(self.noexec, "noexec"),
            flag(self.nosuid, "nosuid"),
            flag(self.nodev, "nodev")
        )
    }
}

/// Docker's rule for a container path, made canonical: absolute, not `/`, no `..`;
/// empty and `.` components are dropped (`/data/./x/` is `/data/x`).
pub fn normalize_target(path: &str) -> Result<String, String> {
    let shown: String = path.chars().take(64).collect();
    if !path.starts_with('/') {
        return Err(format!("mount path {shown:?} must be absolute"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("mount path {shown:?} must not contain '..'")),
            _ if part.contains('\0') => return Err(format!("mount path {shown:?} contains a NUL byte")),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("destination can't be '/'".into());
    }
    let normal = format!("/{}", parts.join("/"));
    if normal.len() > MAX_TARGET_BYTES {
        return Err(format!(
            "mount path {shown:?}... is longer than {MAX_TARGET_BYTES} bytes"
        ));
    }
    Ok(normal)
}

/// A virtio-fs tag as the device advertises it: 1 to 36 bytes of `[A-Za-z0-9_-]`.
pub fn valid_tag(tag: &str) -> bool {
    (1..=36).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The tag of a container's `index`-th shared directory.
pub fn tag(index: usize) -> String {
    format!("{TAG_PREFIX}{index}")
}

impl MountArg {
    /// The mount as the agent may make it: the target normalized ([`normalize_target`]),
    /// the tag one the device can have, tmpfs options within their ranges.
    pub fn validate(self) -> Result<MountArg, String> {
        match self {
            MountArg::Shared { tag, read_only, target } => {
                if !valid_tag(&tag) {
                    let shown: String = tag.chars().take(40).collect();
                    return Err(format!("bad virtio-fs tag {shown:?}"));
                }
                Ok(MountArg::Shared {
                    tag,
                    read_only,
                    target: normalize_target(&target)?,
                })
            }
            MountArg::Tmpfs { target, options } => {
                if options.size == Some(0) || options.mode.is_some_and(|m| m > 0o7777) {
                    return Err(format!("bad tmpfs options {options}"));
                }
                Ok(MountArg::Tmpfs {
                    target: normalize_target(&target)?,
                    options,
                })
            }
        }
    }

    pub fn target(&self) -> &str {
        match self {
            MountArg::Shared { target, .. } | MountArg::Tmpfs { target, .. } => target,
        }
    }
}

/// Checks a whole mount list: at most [`MAX_MOUNTS`], each valid, no target twice.
pub fn validate_all(mounts: Vec<MountArg>) -> Result<Vec<MountArg>, String> {
    if mounts.len() > MAX_MOUNTS {
        return Err(format!("{} mounts; at most {MAX_MOUNTS}", mounts.len()));
    }
    let mounts = mounts
        .into_iter()
        .map(MountArg::validate)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, m) in mounts.iter().enumerate() {
        if mounts[..i].iter().any(|o| o.target() == m.target()) {
            return Err(format!("mount point {} given twice", m.target()));
        }
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_dockers_rules() {
        assert_eq!(normalize_target("/data/./x/").unwrap(), "/data/x");
        assert_eq!(normalize_target("//a//b").unwrap(), "/a/b");
        for bad in ["", "data", "/", "//", "/./", "/a/../b", "/..", "/a\0b"] {
            assert!(normalize_target(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_target(&format!("/{}", "x".repeat(MAX_TARGET_BYTES))).is_err());
    }

    #[test]
    fn tmpfs_options_parse_and_print() {
        let o = TmpfsOptions::parse("size=64,mode=1777,exec", |s| s.parse().ok()).unwrap();
        assert_eq!(o.size, Some(64));
        assert_eq!(o.mode, Some(0o1777));
        assert!(!o.noexec && o.nosuid && o.nodev);
        assert_eq!(o.to_string(), "size=64,mode=1777,exec,nosuid,nodev");
        assert_eq!(o.data(), "size=64,mode=1777");
        assert_eq!(TmpfsOptions::parse(&o.to_string(), |s| s.parse().ok()).unwrap(), o);
        assert_eq!(TmpfsOptions::default().to_string(), "noexec,nosuid,nodev");
        for bad in [
            "uid=0",
            "size=",
            "size=0",
            "size=x",
            "mode=9",
            "mode=77777",
            "ro",
            "nr_inodes=1",
            "exec=1",
        ] {
            assert!(TmpfsOptions::parse(bad, |s| s.parse().ok()).is_err(), "{bad}");
        }
    }

    fn shared(tag: &str, target: &str) -> MountArg {
        MountArg::Shared {
            tag: tag.into(),
            read_only: true,
            target: target.into(),
        }
    }

    #[test]
    fn mounts_survive_the_protocol_and_come_out_normalized() {
        let mounts = vec![
            shared(&tag(0), "/my data/./x=y/"),
            MountArg::Tmpfs {
                target: "/scratch".into(),
                options: TmpfsOptions {
                    size: Some(1 << 20),
                    ..Default::default()
                },
            },
        ];
        let json = serde_json::to_string(&mounts).unwrap();
        let back: Vec<MountArg> = serde_json::from_str(&json).unwrap();
        let valid = validate_all(back).unwrap();
        assert_eq!(valid[0], shared("hullfs0", "/my data/x=y"));
        assert_eq!(valid[1], mounts[1]);
    }

    #[test]
    fn hostile_mounts_are_refused_with_a_reason() {
        let tmpfs = |target: &str, size, mode| MountArg::Tmpfs {
            target: target.into(),
            options: TmpfsOptions {
                size,
                mode,
                ..Default::default()
            },
        };
        let bad = [
            shared("", "/x"),
            shared("bad/tag", "/x"),
            shared(&"t".repeat(37), "/x"),
            shared("hullfs0", "relative"),
            shared("hullfs0", "/"),
            shared("hullfs0", "/a/../../etc"),
            shared("hullfs0", "/a\0b"),
            tmpfs("/x", Some(0), None),
            tmpfs("/x", None, Some(0o17777)),
            tmpfs("", None, None),
        ];
        for m in bad {
            assert!(validate_all(vec![m.clone()]).is_err(), "{m:?}");
        }
        let many = vec![tmpfs("/t", None, None); MAX_MOUNTS + 1];
        assert!(validate_all(many).unwrap_err().contains("at most"));
        let twice = vec![tmpfs("/t", None, None), shared("hullfs0", "/t/")];
        assert!(validate_all(twice).unwrap_err().contains("given twice"));
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(tag in ".{0,40}", target in ".{0,80}", size in proptest::option::of(0u64..4), mode in proptest::option::of(0u32..0o20000)) {
            let _ = validate_all(vec![
                MountArg::Shared { tag, read_only: false, target: target.clone() },
                MountArg::Tmpfs { target, options: TmpfsOptions { size, mode, ..Default::default() } },
            ]);
        }
    }
}
