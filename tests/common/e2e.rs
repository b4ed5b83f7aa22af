//! The fixture of the tests that boot real micro-VMs through the `hull` CLI
//! (`container_e2e`, `hostile_guest`): one store with one image, Debian's
//! busybox-static in two layers, built by `scripts/busybox-image.py` and loaded with
//! `hull load`, and runners for `hull` on that store. The guest kernel, the VMM and
//! the agent come from `HULL_KERNEL`, `HULL_VMM` and `HULL_AGENT`, which
//! `tests/lab/suite.sh` sets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const LAB: &str = "needs a KVM that boots Linux: runs in the lab (tests/lab/suite.sh)";
pub const IMAGE: &str = "busybox:e2e";

pub struct Fixture {
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // HULL_E2E_DIR puts the store (logs of every container) where it can be read
        // after a run; the fixture lives in a static and is never deleted.
        let dir = match std::env::var_os("HULL_E2E_DIR") {
            Some(d) => {
                std::fs::create_dir_all(&d).unwrap();
                let dir = tempfile::tempdir_in(d).unwrap();
                eprintln!("e2e store kept in {}", dir.path().display());
                dir
            }
            None => tempfile::tempdir().unwrap(),
        };
        let root = dir.path().join("store");
        let layout = dir.path().join("layout");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let ok = Command::new("/usr/bin/python3")
            .arg(repo.join("scripts/busybox-image.py"))
            .arg(&layout)
            .status()
            .unwrap()
            .success();
        assert!(ok, "busybox-image.py failed");
        let tar = dir.path().join("image.tar");
        assert!(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap()
            .success());
        let f = Fixture { root, _dir: dir };
        let loaded = run_hull(&f.root, &["load", "-i", tar.to_str().unwrap()]);
        assert!(loaded.status.success(), "{}", text(&loaded.stderr));
        let id = text(&loaded.stdout).trim().rsplit(':').next().unwrap().to_owned();
        let tagged = run_hull(&f.root, &["tag", &id, IMAGE]);
        assert!(tagged.status.success(), "{}", text(&tagged.stderr));
        f
    })
}

pub fn hull_command(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hull"));
    // Without a network unless a test asks for one: in the lab, two networked VMs
    // at once have stalled L1 (see the networking test).
    c.env("HULL_ROOT", root)
        .env("HULL_LOG", "warn")
        .env("HULL_NETWORK", "none");
    if std::env::var_os("HULL_BOOT_TIMEOUT").is_none() {
        c.env("HULL_BOOT_TIMEOUT", "300");
    }
    c
}

pub fn run_hull(root: &Path, args: &[&str]) -> Output {
    hull_command(root).args(args).stdin(Stdio::null()).output().unwrap()
}

pub fn hull(args: &[&str]) -> Output {
    run_hull(&fixture().root, args)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = hull(args);
    assert!(
        out.status.success(),
        "hull {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The exit code, or minus the signal that killed the process.
pub fn code(out: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    out.status.code().unwrap_or_else(|| -out.status.signal().unwrap_or(0))
}

pub fn containers_dir() -> PathBuf {
    fixture().root.join("containers")
}

pub fn container_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(containers_dir())
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

pub fn inspect(name: &str) -> serde_json::Value {
    let out = ok(&["inspect", name]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
