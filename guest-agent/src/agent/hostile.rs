//! A hostile agent, for tests only: built with `--features hostile`
//! (`tests/lab/hostile-agent.sh`), never shipped. Guest root can take over the real
//! agent, so the host must survive an agent that lies at any step of the protocol;
//! this one plays that attacker, one attack per container, chosen by the container's
//! hostname (`--hostname attack-NAME`, received in `Configure`). Without an
//! `attack-` hostname it behaves as the real agent.
//!
//! The attacks (see [`Attack`]) are exercised through the real CLI by the lab's
//! `tests/container_e2e.rs` (`hostile_agent_*`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use guest_agent::protocol::{CopyOp, ExitStatus};
use tar::{EntryType, Header};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// `cp CONTAINER:SRC`: SRC, then a sibling (`.bashrc`) beside it.
    CpSibling,
    /// `cp CONTAINER:SRC`: `../escape` and absolute names.
    CpDotDot,
    /// `cp CONTAINER:SRC`: a symlink SRC -> `..`, then `SRC/pwned` through it.
    CpSymlink,
    /// `cp CONTAINER:SRC`: a hard link to `SRC/victim`, which the stream never made.
    CpHardlink,
    /// `cp CONTAINER:SRC`: setuid and world-writable modes, a fifo, a device node.
    CpModes,
    /// `cp`, `export`, `commit`: a file of 1 TiB whose bytes never end.
    CpEndless,
    /// Every control connection after the first (the monitor's) is accepted and
    /// never answered, not even its `Hello`; `Shutdown` is ignored.
    Mute,
    /// `Hello` is answered, then no request ever is.
    Stall,
    /// Every `Exited` carries exit code 1000 (an exec: signal `i32::MAX`).
    ExitCode,
    /// A start fails with terminal escape sequences in its error text.
    EscapeText,
}

static ATTACK: OnceLock<Attack> = OnceLock::new();
static CONTROL_SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Arms the attack a container's hostname names.
pub fn arm(hostname: &str) {
    let attack = match hostname.strip_prefix("attack-") {
        Some("cp-sibling") => Attack::CpSibling,
        Some("cp-dotdot") => Attack::CpDotDot,
        Some("cp-symlink") => Attack::CpSymlink,
        Some("cp-hardlink") => Attack::CpHardlink,
        Some("cp-modes") => Attack::CpModes,
        Some("cp-endless") => Attack::CpEndless,
        Some("mute") => Attack::Mute,
        Some("stall") => Attack::Stall,
        Some("exit-code") => Attack::ExitCode,
        Some("escape-text") => Attack::EscapeText,
        _ => return,
    };
    let _ = ATTACK.set(attack);
}

fn armed() -> Option<Attack> {
    ATTACK.get().copied()
}

/// Whether a new control connection is left unanswered.
pub fn mute_session() -> bool {
    let first = CONTROL_SESSIONS.fetch_add(1, Ordering::Relaxed) == 0;
    armed() == Some(Attack::Mute) && !first
}

/// Whether a request (after `Hello`) is left unanswered.
pub fn ignore_request(is_shutdown: bool) -> bool {
    match armed() {
        Some(Attack::Stall) => true,
        Some(Attack::Mute) => is_shutdown,
        _ => false,
    }
}

/// The forged status of a process that ended with `status`; `first` is the main
/// process (the first one started).
pub fn exit_status(status: ExitStatus, first: bool) -> ExitStatus {
    match (armed(), first) {
        (Some(Attack::ExitCode), true) => ExitStatus::Code(1000),
        (Some(Attack::ExitCode), false) => ExitStatus::Signal(i32::MAX),
        _ => status,
    }
}

/// The error text a start fails with, if the attack makes it fail.
pub fn start_error() -> Option<String> {
    (armed() == Some(Attack::EscapeText))
        .then(|| "\x1b]0;owned\x07\x1b[2J\x1b[31mno such file\x1b[0m\r\u{9b}6n".to_owned())
}

/// Writes the attack's stream for a file operation instead of the real one;
/// `None` when the operation is not attacked.
pub fn copy(op: &CopyOp, out: &mut impl Write) -> Option<io::Result<()>> {
    let attack = armed()?;
    let name = match op {
        CopyOp::Read { path, .. } => path.rsplit('/').find(|p| !p.is_empty()).unwrap_or("root").to_owned(),
        CopyOp::Export | CopyOp::Layer if attack == Attack::CpEndless => "endless".to_owned(),
        _ => return None,
    };
    let n = name.as_bytes();
    let join = |rest: &[u8]| [n, b"/", rest].concat();
    let entries: Vec<(Vec<u8>, EntryType, u32, Vec<u8>)> = match attack {
        Attack::CpSibling => vec![
            (n.to_vec(), EntryType::Regular, 0o644, vec![]),
            (b".bashrc".to_vec(), EntryType::Regular, 0o644, b"evil".to_vec()),
        ],
        Attack::CpDotDot => vec![
            (b"../escape".to_vec(), EntryType::Regular, 0o644, vec![]),
            (b"/abs".to_vec(), EntryType::Regular, 0o644, vec![]),
        ],
        Attack::CpSymlink => vec![
            (n.to_vec(), EntryType::Symlink, 0o777, b"..".to_vec()),
            (join(b"pwned"), EntryType::Regular, 0o644, vec![]),
        ],
        Attack::CpHardlink => vec![
            (n.to_vec(), EntryType::Directory, 0o755, vec![]),
            (join(b"grab"), EntryType::Link, 0o644, join(b"victim")),
        ],
        Attack::CpModes => vec![
            (n.to_vec(), EntryType::Directory, 0o777, vec![]),
            (join(b"suid"), EntryType::Regular, 0o4777, vec![]),
            (join(b"sgid"), EntryType::Regular, 0o2755, vec![]),
            (join(b"open"), EntryType::Directory, 0o1777, vec![]),
            (join(b"fifo"), EntryType::Fifo, 0o666, vec![]),
            (join(b"null"), EntryType::Char, 0o666, vec![]),
        ],
        Attack::CpEndless => return Some(endless(n, out)),
        _ => return None,
    };
    Some(write_raw(&entries, out))
}

/// A ustar header with `name` and `link` taken verbatim (`..`, absolute).
fn header(name: &[u8], kind: EntryType, mode: u32, link: &[u8], size: u64) -> Header {
    let mut h = Header::new_ustar();
    let old = h.as_old_mut();
    old.name[..name.len().min(99)].copy_from_slice(&name[..name.len().min(99)]);
    old.linkname[..link.len().min(99)].copy_from_slice(&link[..link.len().min(99)]);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    if kind == EntryType::Char {
        let _ = h.set_device_major(1);
        let _ = h.set_device_minor(3);
    }
    h.set_cksum();
    h
}

fn write_raw(entries: &[(Vec<u8>, EntryType, u32, Vec<u8>)], out: &mut impl Write) -> io::Result<()> {
    for (name, kind, mode, data) in entries {
        let (link, body): (&[u8], &[u8]) = match kind {
            EntryType::Symlink | EntryType::Link => (data, b""),
            _ => (b"", data),
        };
        out.write_all(header(name, *kind, *mode, link, body.len() as u64).as_bytes())?;
        out.write_all(body)?;
        out.write_all(&vec![0u8; body.len().next_multiple_of(512) - body.len()])?;
    }
    out.write_all(&[0u8; 1024])
}

fn endless(name: &[u8], out: &mut impl Write) -> io::Result<()> {
    out.write_all(header(name, EntryType::Regular, 0o644, b"", 1 << 40).as_bytes())?;
    let chunk = vec![b'x'; 64 * 1024];
    loop {
        out.write_all(&chunk)?;
    }
}
