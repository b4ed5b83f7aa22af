//! Shared directories, rootless: every bind mount and volume of a running container
//! gets its own `virtiofsd`, started by the container's monitor before the VMM (whose
//! virtio-fs device connects to virtiofsd's vhost-user socket at start) and stopped
//! once the VM is down. virtiofsd serves exactly one connection and exits when the
//! VMM goes away.
//!
//! virtiofsd is the guest's only way to the host's files, so it is confined: its
//! `namespace` sandbox puts it in fresh user, mount, PID and network namespaces whose
//! root is the shared directory itself, so no path the guest sends (`..`, absolute
//! symlinks) names anything outside it. Read-only mounts are refused writes by
//! virtiofsd (`--readonly`), not only by the guest's mount flags. Run by an
//! unprivileged user, virtiofsd can only act as that user: every guest uid and gid is
//! squashed to the user's (so a workload running as `nobody` can write too), and the
//! user's own files show as root's in the guest.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mounts::{self, Mount};

/// How long virtiofsd gets to create its socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long virtiofsd gets to exit by itself once the VM is down.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The longest path a Unix socket address holds (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// Where distributions and `scripts/setup.sh` put virtiofsd, when it is not in PATH.
const KNOWN_PATHS: [&str; 3] = [
    "/usr/local/bin/virtiofsd",
    "/usr/libexec/virtiofsd",
    "/usr/lib/qemu/virtiofsd",
];

#[derive(Debug, thiserror::Error)]
pub enum VirtiofsError {
    #[error("virtiofsd not found: install it with \"cargo install virtiofsd\" (or set HULL_VIRTIOFSD)")]
    Missing,
    #[error("virtiofsd not found at HULL_VIRTIOFSD={0:?}")]
    BadOverride(PathBuf),
    #[error("virtiofsd socket path {0:?} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes at most)")]
    SocketPathTooLong(PathBuf),
    #[error("virtiofsd sharing {dir:?} failed: {message}")]
    Failed { dir: PathBuf, message: String },
}

/// `$HULL_VIRTIOFSD`, else `virtiofsd` in PATH, else the usual install locations.
pub fn find_virtiofsd() -> Result<PathBuf, VirtiofsError> {
    let chosen = std::env::var_os("HULL_VIRTIOFSD").filter(|v| !v.is_empty());
    locate(chosen.map(PathBuf::from), &std::env::var_os("PATH").unwrap_or_default())
}

fn locate(chosen: Option<PathBuf>, search_path: &std::ffi::OsStr) -> Result<PathBuf, VirtiofsError> {
    if let Some(path) = chosen {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(VirtiofsError::BadOverride(path))
        };
    }
    super::programs::find_program("virtiofsd", search_path, &KNOWN_PATHS).ok_or(VirtiofsError::Missing)
}

/// The virtiofsd command sharing `dir` on `socket`.
pub fn virtiofsd_command(virtiofsd: &Path, dir: &Path, socket: &Path, read_only: bool) -> Command {
    let mut cmd = Command::new(virtiofsd);
    cmd.arg("--shared-dir")
        .arg(dir)
        .arg("--socket-path")
        .arg(socket)
        .args(["--sandbox", "namespace", "--cache", "auto", "--no-announce-submounts"])
        // `--log-level` decides (info: a few lines per run), whatever RUST_LOG says.
        .env_remove("RUST_LOG");
    if read_only {
        cmd.arg("--readonly");
    }
    // SAFETY: geteuid and getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid != 0 {
        // Unprivileged, virtiofsd cannot take on the guest's ids (its user namespace
        // maps only this user) nor open file handles.
        cmd.arg("--translate-uid")
            .arg(format!("squash-guest:0:{uid}:{}", u32::MAX))
            .arg("--translate-uid")
            .arg(format!("host:{uid}:0:1"))
            .arg("--translate-gid")
            .arg(format!("squash-guest:0:{gid}:{}", u32::MAX))
            .arg("--translate-gid")
            .arg(format!("host:{gid}:0:1"))
            .arg("--inode-file-handles=never");
    }
    cmd
}

/// One running virtiofsd.
struct Share {
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    child: Child,
}

/// The virtiofsd processes of a container, one per shared directory, in the order of
/// its mounts (the n-th serves tag `hullfs<n>`). Dropping it stops them.
#[derive(Default)]
pub struct Shares {
    shares: Vec<Share>,
}

impl Shares {
    /// Starts one virtiofsd per bind mount or volume in `mounts`, its socket
    /// `fs<n>.sock` in `run_dir`, its log `virtiofsd-<n>.log` in `log_dir`, and waits
    /// for every socket.
    pub fn start(mounts: &[Mount], run_dir: &Path, log_dir: &Path) -> Result<Shares, VirtiofsError> {
        let mut shares = Shares::default();
        let dirs: Vec<(&Path, bool)> = mounts
            .iter()
            .filter_map(|m| m.shared_dir().map(|d| (d, m.read_only())))
            .collect();
        if dirs.is_empty() {
            return Ok(shares);
        }
        let virtiofsd = find_virtiofsd()?;
        for (n, (dir, read_only)) in dirs.into_iter().enumerate() {
            let socket = run_dir.join(format!("fs{n}.sock"));
            let log = log_dir.join(format!("virtiofsd-{n}.log"));
            shares.shares.push(start_one(&virtiofsd, dir, read_only, socket, log)?);
        }
        Ok(shares)
    }

    /// `(tag, socket)` of every shared directory, for the VMM's `--fs`.
    pub fn devices(&self) -> Vec<(String, PathBuf)> {
        self.shares
            .iter()
            .enumerate()
            .map(|(n, s)| (guest_agent::mounts::tag(n), s.socket.clone()))
            .collect()
    }

    /// Why a virtiofsd that already quit with an error did (its last log line).
    pub fn failure(&mut self) -> Option<String> {
        self.shares.iter_mut().find_map(|s| match s.child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                Some(format!("virtiofsd sharing {:?}: {}", s.dir, last_message(&s.log)))
            }
            _ => None,
        })
    }

    /// Gives each virtiofsd a moment to exit by itself (it does once the VMM is
    /// gone), then kills it.
    pub fn stop(&mut self) {
        let deadline = Instant::now() + STOP_GRACE;
        for mut share in self.shares.drain(..) {
            while matches!(share.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = share.child.kill();
            let _ = share.child.wait();
            let _ = std::fs::remove_file(&share.socket);
            // virtiofsd's lock file beside its socket.
            let mut pid_file = share.socket.into_os_string();
            pid_file.push(".pid");
            let _ = std::fs::remove_file(pid_file);
        }
    }
}

impl Drop for Shares {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_one(
    virtiofsd: &Path,
    dir: &Path,
    read_only: bool,
    socket: PathBuf,
    log: PathBuf,
) -> Result<Share, VirtiofsError> {
    let failed = |message: String| VirtiofsError::Failed {
        dir: dir.to_owned(),
        message,
    };
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(VirtiofsError::SocketPathTooLong(socket));
    }
    // It may have gone since create.
    let dir = mounts::canonical_dir(dir).map_err(|e| failed(e.to_string()))?;
    let _ = std::fs::remove_file(&socket);
    let log_file = File::create(&log).map_err(|e| failed(format!("{}: {e}", log.display())))?;
    let child = virtiofsd_command(virtiofsd, &dir, &socket, read_only)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| failed(format!("start {}: {e}", virtiofsd.display())))?;
    let mut share = Share {
        dir,
        socket,
        log,
        child,
    };
    let log = &share.log;
    super::programs::wait_for_socket(&mut share.child, &share.socket, START_TIMEOUT, || last_message(log))
        .map_err(failed)?;
    Ok(share)
}

/// virtiofsd's last error line, or its last line.
fn last_message(log: &Path) -> String {
    let text = super::programs::log_tail(log);
    let lines = || text.lines().rev().filter(|l| !l.trim().is_empty());
    let line = lines()
        .find(|l| l.contains("ERROR"))
        .or_else(|| lines().next())
        .unwrap_or("exited");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn read_only_shares_are_read_only_in_virtiofsd() {
        let cmd = virtiofsd_command(Path::new("/v"), Path::new("/srv"), Path::new("/run/fs0.sock"), true);
        let a = args(&cmd);
        assert_eq!(
            a[..9],
            [
                "--shared-dir",
                "/srv",
                "--socket-path",
                "/run/fs0.sock",
                "--sandbox",
                "namespace",
                "--cache",
                "auto",
                "--no-announce-submounts"
            ]
        );
        assert!(a.contains(&"--readonly".to_owned()));
        let rw = virtiofsd_command(Path::new("/v"), Path::new("/srv"), Path::new("/s"), false);
        assert!(!args(&rw).contains(&"--readonly".to_owned()));
    }

    #[test]
    fn an_override_wins_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("virtiofsd");
        std::fs::write(&bin, "").unwrap();
        assert_eq!(locate(Some(bin.clone()), "".as_ref()).unwrap(), bin);
        assert_eq!(locate(None, dir.path().as_os_str()).unwrap(), bin);
        let err = locate(Some("/nonexistent/virtiofsd".into()), dir.path().as_os_str()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/virtiofsd"), "{err}");
    }

    /// A real virtiofsd: it comes up on its socket, and a missing directory is
    /// reported with its words. Skipped where virtiofsd is not installed.
    #[test]
    fn virtiofsd_starts_and_failures_are_reported() {
        if find_virtiofsd().is_err() {
            eprintln!("virtiofsd not installed; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let mounts = vec![Mount::Bind {
            source: shared.clone(),
            target: "/data".into(),
            read_only: true,
        }];
        let mut shares = Shares::start(&mounts, dir.path(), dir.path()).unwrap();
        assert_eq!(
            shares.devices(),
            vec![("hullfs0".to_owned(), dir.path().join("fs0.sock"))]
        );
        assert!(shares.failure().is_none());
        shares.stop();
        assert!(!dir.path().join("fs0.sock").exists());
        assert!(!dir.path().join("fs0.sock.pid").exists());
        std::fs::remove_dir(&shared).unwrap();
        let err = Shares::start(&mounts, dir.path(), dir.path()).err().unwrap();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
