//! Volumes and tmpfs mounts on the kernel command line: the words the host writes
//! (`hull.fs=TAG:ro|rw:TARGET`, `hull.tmpfs=TARGET:OPTIONS`) and the agent's parser of
//! them, in one place so both sides agree.
//!
//! Targets and options are percent-encoded: every byte outside `[A-Za-z0-9/._-]`
//! becomes `%XX`, so spaces, `=`, `:`, quotes and non-ASCII survive the kernel's
//! command-line splitting. The agent treats every word as hostile input: a malformed
//! one is reported, never guessed at, and nothing here panics.

use serde::{Deserialize, Serialize};

/// Most mounts one container may have.
pub const MAX_MOUNTS: usize = 16;
/// Longest mount point, in bytes, after normalization.
pub const MAX_TARGET_BYTES: usize = 1024;
/// The virtio-fs tag of the `index`-th shared directory of a container.
pub const TAG_PREFIX: &str = "hullfs";

const FS_KEY: &str = "hull.fs=";
const TMPFS_KEY: &str = "hull.tmpfs=";

/// One mount the agent makes in the container root.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-')
}

/// Percent-encodes every byte outside `[A-Za-z0-9/._-]`.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if is_plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode`]; `None` for a bad escape, a raw byte `encode` would have
/// escaped, or text that is not UTF-8.
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if is_plain(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

impl MountArg {
    /// The word for the kernel command line.
    pub fn to_kernel_word(&self) -> String {
        match self {
            MountArg::Shared { tag, read_only, target } => {
                let mode = if *read_only { "ro" } else { "rw" };
                format!("{FS_KEY}{tag}:{mode}:{}", encode(target))
            }
            MountArg::Tmpfs { target, options } => {
                format!("{TMPFS_KEY}{}:{}", encode(target), encode(&options.to_string()))
            }
        }
    }

    /// Reads one command-line word: `None` when it is not a mount word, an error
    /// naming what is wrong when it is one but malformed.
    pub fn parse(word: &str) -> Option<Result<MountArg, String>> {
        if let Some(value) = word.strip_prefix(FS_KEY) {
            return Some(parse_shared(value).map_err(|e| bad_word(word, &e)));
        }
        let value = word.strip_prefix(TMPFS_KEY)?;
        Some(parse_tmpfs(value).map_err(|e| bad_word(word, &e)))
    }

    pub fn target(&self) -> &str {
        match self {
            MountArg::Shared { target, .. } | MountArg::Tmpfs { target, .. } => target,
        }
    }
}

fn bad_word(word: &str, reason: &str) -> String {
    let shown: String = word.chars().take(80).collect();
    format!("bad mount {shown:?}: {reason}")
}

fn parse_target(encoded: &str) -> Result<String, String> {
    let target = decode(encoded).ok_or("bad percent-encoding")?;
    normalize_target(&target)
}

fn parse_shared(value: &str) -> Result<MountArg, String> {
    let mut fields = value.splitn(3, ':');
    let (Some(tag), Some(mode), Some(target)) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected TAG:ro|rw:TARGET".into());
    };
    if !valid_tag(tag) {
        return Err("bad tag".into());
    }
    let read_only = match mode {
        "ro" => true,
        "rw" => false,
        _ => return Err("the mode must be ro or rw".into()),
    };
    Ok(MountArg::Shared {
        tag: tag.to_owned(),
        read_only,
        target: parse_target(target)?,
    })
}

fn parse_tmpfs(value: &str) -> Result<MountArg, String> {
    let (target, options) = value.split_once(':').ok_or("expected TARGET:OPTIONS")?;
    let options = decode(options).ok_or("bad percent-encoding")?;
    Ok(MountArg::Tmpfs {
        target: parse_target(target)?,
        options: TmpfsOptions::parse(&options, |s| s.parse().ok())?,
    })
}

/// Every mount word of a command line, in order; the errors of malformed ones (and
/// of mounts past [`MAX_MOUNTS`]) separately.
pub fn from_cmdline(cmdline: &str) -> (Vec<MountArg>, Vec<String>) {
    let mut mounts = Vec::new();
    let mut errors = Vec::new();
    for parsed in cmdline.split_ascii_whitespace().filter_map(MountArg::parse) {
        match parsed {
            Ok(_) if mounts.len() == MAX_MOUNTS => errors.push(format!("more than {MAX_MOUNTS} mounts")),
            Ok(m) => mounts.push(m),
            Err(e) => errors.push(e),
        }
    }
    (mounts, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_safe_bytes_and_round_trips_the_rest() {
        assert_eq!(encode("/data/a_b-c.d"), "/data/a_b-c.d");
        assert_eq!(encode("/my dir/a=b:c"), "/my%20dir/a%3Db%3Ac");
        for text in ["/x y", "/ünï/%41", "/\"q'\t\n", "size=1,mode=0755,noexec"] {
            assert_eq!(decode(&encode(text)).as_deref(), Some(text));
        }
        for bad in ["%", "%4", "%zz", "/a b", "a=b", "%FF", "%e2%82"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

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

    #[test]
    fn words_round_trip() {
        let mounts = [
            MountArg::Shared {
                tag: tag(0),
                read_only: true,
                target: "/my data/x=y".into(),
            },
            MountArg::Tmpfs {
                target: "/scratch".into(),
                options: TmpfsOptions {
                    size: Some(1 << 20),
                    ..Default::default()
                },
            },
        ];
        let line: Vec<String> = mounts.iter().map(MountArg::to_kernel_word).collect();
        assert_eq!(line[0], "hull.fs=hullfs0:ro:/my%20data/x%3Dy");
        assert_eq!(line[1], "hull.tmpfs=/scratch:size%3D1048576%2Cnoexec%2Cnosuid%2Cnodev");
        let (parsed, errors) = from_cmdline(&format!("quiet {} console=ttyS0", line.join(" ")));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(parsed, mounts);
    }

    #[test]
    fn hostile_words_are_refused_without_panics() {
        let bad = [
            "hull.fs=",
            "hull.fs=hullfs0",
            "hull.fs=hullfs0:ro",
            "hull.fs=:ro:/x",
            "hull.fs=bad/tag:ro:/x",
            "hull.fs=hullfs0:rx:/x",
            "hull.fs=hullfs0:ro:relative",
            "hull.fs=hullfs0:ro:/",
            "hull.fs=hullfs0:ro:/a/../../etc",
            "hull.fs=hullfs0:ro:/a%2F..%2F..%2Fetc",
            "hull.fs=hullfs0:ro:/a%00b",
            "hull.fs=hullfs0:ro:/%",
            "hull.fs=hullfs0:ro:/a:b",
            "hull.tmpfs=/x",
            "hull.tmpfs=/x:uid%3D0",
            "hull.tmpfs=/x:size=1",
            "hull.tmpfs=:noexec",
            "hull.tmpfs=/x:%ZZ",
        ];
        for word in bad {
            let (mounts, errors) = from_cmdline(word);
            assert!(mounts.is_empty() && errors.len() == 1, "{word}: {mounts:?} {errors:?}");
        }
        let (mounts, errors) = from_cmdline(&"hull.tmpfs=/t:noexec ".repeat(MAX_MOUNTS + 2));
        assert_eq!((mounts.len(), errors.len()), (MAX_MOUNTS, 2));
        assert_eq!(from_cmdline("hull.fsx=1 hull.upper=disk"), (vec![], vec![]));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(word in "hull\\.(fs|tmpfs)=.{0,60}") {
            let _ = from_cmdline(&word);
        }

        #[test]
        fn any_valid_target_round_trips(target in "/[^\\x00]{1,80}") {
            if let Ok(normal) = normalize_target(&target) {
                let arg = MountArg::Shared { tag: tag(3), read_only: false, target: normal };
                let (parsed, errors) = from_cmdline(&arg.to_kernel_word());
                proptest::prop_assert!(errors.is_empty(), "{:?}", errors);
                proptest::prop_assert_eq!(parsed, vec![arg]);
            }
        }
    }
}
