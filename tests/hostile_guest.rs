//! The host against a hostile guest, through the real `hull` CLI: containers whose
//! agent is the test-only hostile one (`guest-agent --features hostile`, built by
//! `tests/lab/hostile-agent.sh`, found through `HULL_HOSTILE_AGENT`), each playing
//! one attack at one step of the protocol (chosen by `--hostname attack-NAME`; see
//! `guest-agent/src/agent/hostile.rs`). Each test shows the host unharmed: nothing
//! outside the destination changed, the command ended in time with a clear error, no
//! VMM left running.
//!
//! Like the other VM tests they are `#[ignore]`d on the host and run by
//! `tests/lab/suite.sh`, as an unprivileged user.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::e2e::{code, fixture, hull, hull_command, inspect, ok, text, IMAGE};

fn hostile_agent() -> String {
    std::env::var("HULL_HOSTILE_AGENT")
        .expect("HULL_HOSTILE_AGENT is not set: tests/lab/suite.sh builds it with tests/lab/hostile-agent.sh")
}

/// `hull` on the fixture's store with extra environment.
fn hull_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = hull_command(&fixture().root);
    cmd.envs(env.iter().copied());
    cmd.args(args).stdin(Stdio::null()).output().unwrap()
}

/// Starts a detached container whose agent plays `attack`.
fn attacker(attack: &str) -> String {
    let name = format!("hostile-{attack}");
    let hostname = format!("attack-{attack}");
    let agent = hostile_agent();
    let out = hull_env(
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            &hostname,
            IMAGE,
            "sleep",
            "600",
        ],
        &[("HULL_AGENT", &agent)],
    );
    assert!(out.status.success(), "run {name}: {}", text(&out.stderr));
    name
}

/// Removes the container and checks its VMM is gone.
fn remove(name: &str) {
    let pid = inspect(name)["State"]["Pid"].as_u64().unwrap_or(0);
    ok(&["rm", "-f", name]);
    if pid > 0 {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "VMM {pid} of {name} left running"
        );
    }
}

/// Every path below `dir` with its mode, size and content (files only).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let data = if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            out.insert(path.clone(), (meta.mode(), meta.nlink(), data));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

/// A home directory around the destination: what an attacker would go for.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        fs::write(home.join(".bashrc"), "mine").unwrap();
        fs::create_dir(home.join(".ssh")).unwrap();
        fs::write(home.join(".ssh/authorized_keys"), "key").unwrap();
        Home { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh destination directory for one attack.
    fn dest(&self, attack: &str) -> PathBuf {
        let dest = self.path().join(format!("dest-{attack}"));
        fs::create_dir(&dest).unwrap();
        dest
    }

    /// What is outside `dest`.
    fn around(&self, dest: &Path) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
        let mut t = tree(self.path());
        t.retain(|p, _| !p.starts_with(dest));
        t
    }
}

/// `hull cp CONTAINER:/etc/hosts DEST/` against `attack`: refused with a line
/// containing `expect`, and nothing outside DEST changed.
fn refused_copy(home: &Home, attack: &str, expect: &str, prepare: impl FnOnce(&Path)) -> PathBuf {
    let name = attacker(attack);
    let dest = home.dest(attack);
    prepare(&dest);
    let before = home.around(&dest);
    let started = Instant::now();
    let target = format!("{}/", dest.display());
    let out = hull_env(
        &["cp", &format!("{name}:/etc/hosts"), &target],
        &[("HULL_STREAM_LIMIT", "8m")],
    );
    assert_eq!(code(&out), 125, "cp from {attack}: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(expect), "cp from {attack}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "cp from {attack} took {:?}",
        started.elapsed()
    );
    assert_eq!(
        home.around(&dest),
        before,
        "{attack} changed files outside the destination"
    );
    remove(&name);
    dest
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn hostile_agent_cp_streams_stay_beneath_the_destination() {
    let home = Home::new();
    // A sibling of the source: the user's .bashrc beside the copy.
    let dest = refused_copy(&home, "cp-sibling", "outside the copied source", |dest| {
        fs::write(dest.join(".bashrc"), "mine too").unwrap()
    });
    assert_eq!(fs::read(dest.join(".bashrc")).unwrap(), b"mine too");
    assert_eq!(
        fs::read(dest.join("hosts")).unwrap(),
        b"",
        "what came first stays, inside"
    );
    // `../escape` and absolute names.
    refused_copy(&home, "cp-dotdot", "'..'", |_| {});
    // A symlink to `..`, then a write through it.
    let dest = refused_copy(&home, "cp-symlink", "symlink", |_| {});
    assert!(!home.path().join("pwned").exists());
    assert!(!dest.join("pwned").exists());
    // A hard link to a file the stream never made.
    let dest = refused_copy(&home, "cp-hardlink", "hard link", |dest| {
        fs::create_dir(dest.join("hosts")).unwrap();
        fs::write(dest.join("hosts/victim"), "secret").unwrap();
    });
    assert!(!dest.join("hosts/grab").exists());
    assert_eq!(fs::metadata(dest.join("hosts/victim")).unwrap().nlink(), 1);
    // A file whose bytes never end: stopped at the stream limit, no partial file.
    let dest = refused_copy(&home, "cp-endless", "limit", |_| {});
    assert_eq!(
        fs::read_dir(&dest).unwrap().count(),
        0,
        "nothing left in {}",
        dest.display()
    );
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn hostile_agent_modes_fifos_and_devices_are_tamed_on_the_host() {
    let home = Home::new();
    let name = attacker("cp-modes");
    let dest = home.dest("cp-modes");
    let out = hull(&["cp", &format!("{name}:/etc/hosts"), dest.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("fifo") && err.contains("null"),
        "skipped entries named: {err}"
    );
    let copied = dest.join("hosts");
    for (path, (mode, _, _)) in tree(&dest) {
        assert_eq!(mode & 0o7000, 0, "{} has mode {mode:o}", path.display());
        assert_eq!(mode & 0o002, 0, "{} is world-writable ({mode:o})", path.display());
    }
    assert!(copied.join("suid").is_file());
    assert!(!copied.join("fifo").exists() && !copied.join("null").exists());
    remove(&name);
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn hostile_agent_endless_export_and_commit_leave_nothing() {
    let home = Home::new();
    let name = attacker("cp-endless");
    let images_before = ok(&["images", "-q"]);
    let limit = [("HULL_STREAM_LIMIT", "8m")];
    let tar = home.path().join("fs.tar");
    let out = hull_env(&["export", "-o", tar.to_str().unwrap(), &name], &limit);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("limit"), "{}", text(&out.stderr));
    assert!(!tar.exists(), "no partial export under its name");
    let out = hull_env(&["commit", &name, "hostile:endless"], &limit);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("limit"), "{}", text(&out.stderr));
    assert_eq!(ok(&["images", "-q"]), images_before, "no image from a cut layer");
    remove(&name);
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn hostile_agent_silence_ends_stop_exec_and_cp_in_time() {
    let name = attacker("mute");
    let pid = inspect(&name)["State"]["Pid"].as_u64().unwrap();
    let quick = [("HULL_AGENT_TIMEOUT", "5")];
    let started = Instant::now();
    let out = hull_env(&["exec", &name, "true"], &quick);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("did not answer"), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&name),
        "names the container: {}",
        text(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "exec took {:?}",
        started.elapsed()
    );
    let home = Home::new();
    let out = hull_env(
        &["cp", &format!("{name}:/etc/hosts"), home.path().to_str().unwrap()],
        &quick,
    );
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("did not answer"), "{}", text(&out.stderr));
    // stop -t 1: the signals go unanswered, the VMM is killed in time.
    let started = Instant::now();
    ok(&["stop", "-t", "1", &name]);
    assert!(
        started.elapsed() < Duration::from_secs(1 + 15 + 15 + 10),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "the VMM is gone");
    assert_eq!(inspect(&name)["State"]["Status"], "exited");
    remove(&name);
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn hostile_agent_lies_are_range_checked_and_text_is_made_printable() {
    let agent = hostile_agent();
    let containers_before = ok(&["ps", "-a", "-q"]);
    let with_agent = |attack: &str, extra: &[(&str, &str)]| {
        let mut env = vec![("HULL_AGENT", agent.as_str())];
        env.extend_from_slice(extra);
        let hostname = format!("attack-{attack}");
        hull_env(&["run", "--rm", "--hostname", &hostname, IMAGE, "true"], &env)
    };
    // A forged exit code of 1000 becomes 255, never an overflow.
    let out = with_agent("exit-code", &[]);
    assert_eq!(code(&out), 255, "{}", text(&out.stderr));
    // Escape sequences in the agent's error never reach the terminal.
    let out = with_agent("escape-text", &[]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("no such file"), "{err}");
    assert!(
        !err.contains('\x1b') && !err.contains('\u{9b}') && !err.contains('\r'),
        "{err:?}"
    );
    // A Configure that is never answered: the run ends with the agent timeout.
    let started = Instant::now();
    let out = with_agent("stall", &[("HULL_AGENT_TIMEOUT", "10")]);
    assert_eq!(code(&out), 125, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("did not answer"), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(300 + 10 + 30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ok(&["ps", "-a", "-q"]), containers_before, "--rm containers are gone");
}

#[test]
#[ignore = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)"]
fn a_real_agent_still_copies_out_normally() {
    // The control: the same copy from the real agent works.
    let home = Home::new();
    ok(&["run", "-d", "--name", "hostile-control", IMAGE, "sleep", "600"]);
    ok(&["cp", "hostile-control:/etc/passwd", home.path().to_str().unwrap()]);
    assert!(fs::read_to_string(home.path().join("passwd")).unwrap().contains("root"));
    remove("hostile-control");
}
