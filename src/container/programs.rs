//! Host programs a container needs (`mke2fs`, `passt`, `virtiofsd`): finding them,
//! waiting for the socket a started helper serves, and reading the end of its log.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// `name` in the directories of `search_path` (a `PATH` value; empty entries are
/// skipped, so nothing is looked up relative to the working directory), then at the
/// `known` paths where Debian installs it outside an ordinary user's `PATH`.
pub fn find_program(name: &str, search_path: &OsStr, known: &[&str]) -> Option<PathBuf> {
    std::env::split_paths(search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .chain(known.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// [`find_program`] over this process's `PATH`.
pub fn find_in_path(name: &str, known: &[&str]) -> Option<PathBuf> {
    find_program(name, &std::env::var_os("PATH").unwrap_or_default(), known)
}

/// Most bytes read from the end of a helper's log (the VMM's, passt's, virtiofsd's):
/// a guest can make the VMM's grow, so no log is read whole.
const LOG_TAIL: u64 = 64 * 1024;

/// The last [`LOG_TAIL`] bytes of the log at `path` as text (empty when unreadable).
pub fn log_tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let mut tail = Vec::new();
    let read = file
        .seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)))
        .and_then(|_| file.take(LOG_TAIL).read_to_end(&mut tail));
    match read {
        Ok(_) => String::from_utf8_lossy(&tail).into_owned(),
        Err(_) => String::new(),
    }
}

/// Waits until `child` has created `socket`. If the child exits first, the error is
/// `why()` (its own last words) with the exit status; after `timeout` it is killed.
pub fn wait_for_socket(
    child: &mut Child,
    socket: &Path,
    timeout: Duration,
    why: impl Fn() -> String,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if socket.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{} ({status})", why()));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no socket after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_end_of_a_big_log_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vmm.log");
        let mut text = "x".repeat(10 << 20);
        text.push_str("\nvmm: the last words\n");
        std::fs::write(&log, text).unwrap();
        let tail = log_tail(&log);
        assert_eq!(tail.len() as u64, LOG_TAIL);
        assert!(tail.ends_with("vmm: the last words\n"));
        assert_eq!(log_tail(&dir.path().join("missing")), "");
    }
    use std::process::Command;

    #[test]
    fn programs_are_found_in_path_first_then_at_known_places_never_in_the_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool");
        std::fs::write(&bin, "").unwrap();
        assert_eq!(find_program("tool", dir.path().as_os_str(), &[]), Some(bin.clone()));
        let known = bin.to_str().unwrap();
        assert_eq!(
            find_program("tool", "/nonexistent".as_ref(), &[known]),
            Some(bin.clone())
        );
        assert_eq!(find_program("tool", "/nonexistent".as_ref(), &[]), None);
        // Tests run in the crate root, where Cargo.toml is.
        assert!(Path::new("Cargo.toml").is_file());
        assert_eq!(
            find_program("Cargo.toml", ":".as_ref(), &[]),
            None,
            "an empty PATH entry is not the cwd"
        );
    }

    #[test]
    fn a_helper_that_exits_before_its_socket_is_reported_with_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("false").spawn().unwrap();
        let err = wait_for_socket(&mut child, &dir.path().join("s"), Duration::from_secs(10), || {
            "its last words".into()
        })
        .unwrap_err();
        assert!(err.starts_with("its last words (exit status: 1)"), "{err}");
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let err = wait_for_socket(
            &mut child,
            &dir.path().join("s"),
            Duration::from_millis(50),
            String::new,
        )
        .unwrap_err();
        assert!(err.starts_with("no socket after"), "{err}");
        assert!(child.try_wait().unwrap().is_some(), "killed and reaped");
    }
}
