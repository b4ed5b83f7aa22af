//! The host <-> agent wire protocol, version 1.
//!
//! Transport: vsock stream connections, which the host reaches through the VMM's
//! hybrid Unix socket (`CONNECT <port>\n`). The agent listens on two ports:
//!
//! - [`CONTROL_PORT`]: one connection per host client carrying [`HostMessage`]s and
//!   [`AgentMessage`]s, starting with a `Hello` exchange that fixes the version.
//! - [`STDIO_PORT`]: one connection per process stream; its first frame is an
//!   [`Attach`] naming the process and stream, then raw bytes flow. Output therefore
//!   never shares a connection with control messages and cannot block them.
//!
//! Frames are a little-endian `u32` payload length followed by a JSON payload. Every
//! reader bounds the length before allocating: the host accepts small frames from the
//! guest ([`MAX_AGENT_FRAME`]), the agent larger ones from the host ([`MAX_HOST_FRAME`],
//! room for big environments).

use std::io::{self, Read, Write};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;
/// vsock port of the control connection.
pub const CONTROL_PORT: u32 = 1024;
/// vsock port of stdio connections.
pub const STDIO_PORT: u32 = 1025;
/// Largest frame the host accepts from the guest.
pub const MAX_AGENT_FRAME: u32 = 64 * 1024;
/// Largest frame the agent accepts from the host.
pub const MAX_HOST_FRAME: u32 = 16 * 1024 * 1024;

/// Messages from the host to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    Hello {
        version: u32,
    },
    /// Start a process; `id` is chosen by the host and unique per VM.
    Start {
        id: u32,
        spec: ProcessSpec,
    },
    Signal {
        id: u32,
        signal: i32,
    },
    Resize {
        id: u32,
        rows: u16,
        cols: u16,
    },
    /// A file operation on the container's files. Its data flows on `id`'s stdio
    /// connections (a tar stream in on stdin, a tar stream or text out on stdout);
    /// the agent answers `Started`, then `Exited` with code 0 or an `Error`.
    Copy {
        id: u32,
        op: CopyOp,
    },
    /// The container's own settings, once per boot, before its main process starts:
    /// its hostname (`/etc/hostname`, `/etc/hosts`, the UTS name), the extra
    /// `/etc/hosts` lines of `--add-host`, and its volumes and tmpfs mounts. User
    /// strings travel here, never on the kernel command line. The agent answers
    /// `Configured` or an `Error`.
    Configure {
        hostname: String,
        mounts: Vec<crate::mounts::MountArg>,
        #[serde(default)]
        hosts: Vec<HostEntry>,
        #[serde(default)]
        resources: Resources,
        /// `--read-only`: the container root's own mount is made read-only last
        /// (volumes, tmpfs mounts, /dev and /proc keep their modes).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        read_only: bool,
        /// `--sysctl`: `(key, value)`, written under `/proc/sys` before any process.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sysctls: Vec<(String, String)>,
    },
    /// Power the VM off once every process has been reaped.
    Shutdown,
}

/// One extra `/etc/hosts` line: `address name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    pub name: String,
    pub address: Ipv4Addr,
}

/// What the container's processes may use inside the guest, applied as Docker applies
/// it: limits on the container's cgroup, the size of its `/dev/shm`. `None` is
/// Docker's default (no limit; 64 MiB of `/dev/shm`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// `memory.max` in bytes (`--memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// `memory.swap.max` in bytes (`--memory-swap` less `--memory`); `u64::MAX` for
    /// no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<u64>,
    /// `pids.max` (`--pids-limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// `cpu.max`'s quota in microseconds per [`CPU_PERIOD_US`] (`--cpus 1.5` is 150000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<u64>,
    /// `cpuset.cpus` (`--cpuset-cpus`, e.g. `0-1,3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Bytes of `/dev/shm` (`--shm-size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm: Option<u64>,
}

/// The period of `cpu.max`, as Docker's `--cpus` uses it.
pub const CPU_PERIOD_US: u64 = 100_000;

/// Whether `list` is a CPU list as `cpuset.cpus` takes it (`0-3,6`), with every CPU
/// below `cpus`.
pub fn valid_cpu_list(list: &str, cpus: u32) -> bool {
    let cpu = |s: &str| s.parse::<u32>().ok().filter(|c| *c < cpus);
    !list.is_empty()
        && list.len() <= 256
        && list.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => matches!((cpu(a), cpu(b)), (Some(a), Some(b)) if a <= b),
            None => cpu(part).is_some(),
        })
}

/// Longest name an `/etc/hosts` entry may have (a DNS name's limit).
pub const HOST_NAME_MAX: usize = 253;

/// Whether `name` can be an `/etc/hosts` name: 1 to [`HOST_NAME_MAX`] bytes of
/// letters, digits, `-`, `.` and `_`, not starting with `-` or `.` (no blanks, no
/// NUL, nothing a resolver would split or misread).
pub fn valid_host_name(name: &str) -> bool {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    !name.is_empty() && name.len() <= HOST_NAME_MAX && !name.starts_with(['-', '.']) && name.bytes().all(plain)
}

/// The file operations behind `cp`, `diff`, `commit` and `export`. Paths are
/// resolved inside the container root only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CopyOp {
    /// A tar of `path` whose entries start with its last component, or hold only
    /// its children with `contents` (`docker cp CONTAINER:DIR/. DEST`).
    Read { path: String, contents: bool },
    /// Unpacks the tar read from stdin at `path`, placed as `docker cp` places a
    /// copy; with `archive` the stream is the user's own tar (`cp -`) and `path`
    /// must be a directory. `owners` keeps the stream's uid/gid (`cp -a`).
    Write {
        path: String,
        contents: bool,
        archive: bool,
        owners: bool,
    },
    /// The writable layer's changes, one `A|C|D /path` line each.
    Diff,
    /// The writable layer as an OCI layer tar.
    Layer,
    /// The whole container file system as a tar.
    Export,
}

/// Messages from the agent to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello {
        version: u32,
    },
    Started {
        id: u32,
        pid: u32,
    },
    Exited {
        id: u32,
        status: ExitStatus,
        /// For the main process: the guest's OOM killer killed a process of the
        /// container (Docker's `OOMKilled`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        oom_killed: bool,
    },
    Error {
        id: Option<u32>,
        kind: ErrorKind,
        message: String,
    },
    /// A `Configure` request is applied: hostname set, every mount in place.
    Configured,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The exit code a shell (and Docker) reports: the code, or 128 + signal. The
    /// numbers come from the guest: a code outside 0-255 or a signal outside 1-64 (the
    /// ones Linux has) becomes 255, never an overflow.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c @ 0..=255) => c,
            ExitStatus::Signal(s @ 1..=64) => 128 + s,
            ExitStatus::Code(_) | ExitStatus::Signal(_) => 255,
        }
    }
}

/// Why the agent refused or failed a request; maps onto Docker's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The executable does not exist (exit 127).
    NotFound,
    /// The executable exists but cannot be run (exit 126).
    NotExecutable,
    /// The request was malformed or out of order.
    Protocol,
    /// Anything else inside the guest (exit 125).
    Internal,
}

/// What to run and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// Docker's `--user`: empty (the image's default, root), `name`, `uid`,
    /// `name:group` or `uid:gid`, resolved by the agent through the container's
    /// `/etc/passwd` and `/etc/group`.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub tty: bool,
    /// Whether the host will attach stdin; without it the process reads /dev/null.
    #[serde(default)]
    pub stdin: bool,
    /// `exec -d`: the host attaches nothing; the process reads and writes /dev/null
    /// (its output is discarded, as Docker discards it), and no terminal is made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub detached: bool,
    /// `--group-add`: more supplementary groups, names (from the container's
    /// `/etc/group`) or numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    /// `--ulimit`: resource limits set in the process before it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
}

/// One `--ulimit NAME=SOFT[:HARD]`; `u64::MAX` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// The `--ulimit` names, as Docker takes them, and their resources.
/// (The resources are `c_uint` with glibc and `c_int` with musl, hence the casts.)
#[allow(clippy::unnecessary_cast)]
pub const ULIMITS: &[(&str, u32)] = &[
    ("core", libc::RLIMIT_CORE as u32),
    ("cpu", libc::RLIMIT_CPU as u32),
    ("data", libc::RLIMIT_DATA as u32),
    ("fsize", libc::RLIMIT_FSIZE as u32),
    ("locks", libc::RLIMIT_LOCKS as u32),
    ("memlock", libc::RLIMIT_MEMLOCK as u32),
    ("msgqueue", libc::RLIMIT_MSGQUEUE as u32),
    ("nice", libc::RLIMIT_NICE as u32),
    ("nofile", libc::RLIMIT_NOFILE as u32),
    ("nproc", libc::RLIMIT_NPROC as u32),
    ("rss", libc::RLIMIT_RSS as u32),
    ("rtprio", libc::RLIMIT_RTPRIO as u32),
    ("rttime", libc::RLIMIT_RTTIME as u32),
    ("sigpending", libc::RLIMIT_SIGPENDING as u32),
    ("stack", libc::RLIMIT_STACK as u32),
];

/// The resource of a `--ulimit` name.
pub fn ulimit_resource(name: &str) -> Option<u32> {
    ULIMITS.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

/// First frame on a stdio connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    pub id: u32,
    pub stream: Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("malformed frame payload")]
    Payload(#[source] serde_json::Error),
    #[error("frame i/o failed")]
    Io(#[source] io::Error),
}

/// Writes one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, message: &T) -> Result<(), FrameError> {
    let payload = serde_json::to_vec(message).map_err(FrameError::Payload)?;
    let len = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        len: u32::MAX,
        max: u32::MAX,
    })?;
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&payload);
    w.write_all(&frame).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads one frame of at most `max` bytes. `Ok(None)` is a clean end of stream
/// between frames.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read, max: u32) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    match read_full(r, &mut header)? {
        0 => return Ok(None),
        4 => {}
        _ => return Err(FrameError::Truncated),
    }
    let len = u32::from_le_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? != payload.len() {
        return Err(FrameError::Truncated);
    }
    decode(&payload).map(Some)
}

/// Decodes a frame payload.
pub fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(payload).map_err(FrameError::Payload)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(m: T) {
        let mut buf = Vec::new();
        write_frame(&mut buf, &m).unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame::<T>(&mut r, MAX_HOST_FRAME).unwrap(), Some(m));
        assert_eq!(read_frame::<T>(&mut r, MAX_HOST_FRAME).unwrap(), None);
    }

    #[test]
    fn messages_round_trip() {
        round_trip(HostMessage::Hello { version: VERSION });
        round_trip(HostMessage::Start {
            id: 7,
            spec: ProcessSpec {
                args: vec!["sh".into()],
                env: vec!["A=b".into()],
                cwd: "/".into(),
                tty: true,
                ..Default::default()
            },
        });
        round_trip(HostMessage::Start {
            id: 8,
            spec: ProcessSpec {
                args: vec!["sleep".into(), "5".into()],
                detached: true,
                ..Default::default()
            },
        });
        round_trip(HostMessage::Copy {
            id: 9,
            op: CopyOp::Write {
                path: "/etc".into(),
                contents: false,
                archive: true,
                owners: false,
            },
        });
        round_trip(HostMessage::Copy {
            id: 9,
            op: CopyOp::Layer,
        });
        round_trip(AgentMessage::Exited {
            id: 7,
            status: ExitStatus::Signal(9),
            oom_killed: true,
        });
        round_trip(HostMessage::Configure {
            hostname: "web".into(),
            mounts: vec![],
            hosts: vec![],
            resources: Resources {
                memory: Some(256 << 20),
                swap: Some(u64::MAX),
                pids: Some(100),
                cpu_quota: Some(150_000),
                cpuset: Some("0-1".into()),
                shm: Some(1 << 30),
            },
            read_only: true,
            sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
        });
        // A host or agent of the version before resources and OOM reports.
        let old: AgentMessage = decode(br#"{"type":"exited","id":1,"status":{"code":0}}"#).unwrap();
        assert!(matches!(old, AgentMessage::Exited { oom_killed: false, .. }));
        let old: HostMessage = decode(br#"{"type":"configure","hostname":"h","mounts":[]}"#).unwrap();
        assert!(matches!(old, HostMessage::Configure { resources, .. } if resources == Resources::default()));
        round_trip(Attach {
            id: 7,
            stream: Stream::Stderr,
        });
    }

    #[test]
    fn cpu_lists_are_checked_against_the_vcpus() {
        for ok in ["0", "0-3", "0,2", "1-1,3", "0-1,2-3"] {
            assert!(valid_cpu_list(ok, 4), "{ok}");
        }
        for bad in ["", "4", "0-4", "3-1", "-1", "0,", "a", "0 1", "0--1", &"0,".repeat(200)] {
            assert!(!valid_cpu_list(bad, 4), "{bad}");
        }
    }

    #[test]
    fn exit_codes_and_signals_out_of_range_become_255() {
        assert_eq!(ExitStatus::Code(0).shell_code(), 0);
        assert_eq!(ExitStatus::Code(255).shell_code(), 255);
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
        assert_eq!(ExitStatus::Signal(64).shell_code(), 192);
        for forged in [
            ExitStatus::Code(256),
            ExitStatus::Code(-1),
            ExitStatus::Code(i32::MIN),
            ExitStatus::Code(i32::MAX),
            ExitStatus::Signal(0),
            ExitStatus::Signal(65),
            ExitStatus::Signal(-3),
            ExitStatus::Signal(i32::MAX),
        ] {
            assert_eq!(forged.shell_code(), 255, "{forged:?}");
        }
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let frame = u32::MAX.to_le_bytes();
        let err = read_frame::<AgentMessage>(&mut &frame[..], MAX_AGENT_FRAME).unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: u32::MAX,
                max: MAX_AGENT_FRAME
            }
        ));
    }

    #[test]
    fn truncated_frames_are_errors() {
        assert!(matches!(
            read_frame::<AgentMessage>(&mut &[1u8, 0][..], 100),
            Err(FrameError::Truncated)
        ));
        let short = [10u8, 0, 0, 0, b'{'];
        assert!(matches!(
            read_frame::<AgentMessage>(&mut &short[..], 100),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn unknown_message_type_is_a_payload_error() {
        let err = decode::<AgentMessage>(br#"{"type":"exited_forged_by_workload"}"#).unwrap_err();
        assert!(matches!(err, FrameError::Payload(_)));
    }

    #[test]
    fn signal_exit_maps_to_128_plus_n() {
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
        assert_eq!(ExitStatus::Code(3).shell_code(), 3);
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let mut r = &bytes[..];
            while let Ok(Some(_)) = read_frame::<AgentMessage>(&mut r, MAX_AGENT_FRAME) {}
        }
    }
}
