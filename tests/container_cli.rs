//! Container commands on the host, where no guest needs to boot: flag and name
//! checks that must fail before anything is created, containers that are created
//! but never started, and a VM that never comes up.
//!
//! These open /dev/kvm (the one privilege hull needs) but never run a guest, so
//! they run in the host test suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A store holding the busybox image as `busybox:cli`.
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        let layout = env.dir.path().join("layout");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(Command::new("/usr/bin/python3")
            .arg(repo.join("scripts/busybox-image.py"))
            .arg(&layout)
            .status()
            .unwrap()
            .success());
        let tar = env.dir.path().join("image.tar");
        assert!(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .args(["-cf", tar.to_str().unwrap(), "."])
            .status()
            .unwrap()
            .success());
        let out = env.hull(&["load", "-i", tar.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let id = text(&out.stdout).trim().rsplit(':').next().unwrap().to_owned();
        assert!(env.hull(&["tag", &id, "busybox:cli"]).status.success());
        env
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hull"));
        c.env("HULL_ROOT", self.root())
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn hull(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn containers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.root().join("containers"))
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
            .unwrap_or_default()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(125), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
}

#[test]
fn bad_names_are_refused_before_anything_is_created() {
    let env = Env::new();
    for bad in ["a b", "_x", "x", "../etc", "name/with/slash"] {
        let name = format!("--name={bad}");
        let out = env.hull(&["run", &name, "busybox:cli", "true"]);
        assert_refused(&out, "invalid container name");
    }
    assert!(env.containers().is_empty());
}

#[test]
fn conflicting_and_bad_flags_are_refused() {
    let env = Env::new();
    // -it with a stdin that is not a terminal.
    assert_refused(&env.hull(&["run", "-it", "busybox:cli", "sh"]), "not a TTY");
    assert_refused(&env.hull(&["run", "-m", "1m", "busybox:cli", "true"]), "Minimum memory");
    assert_refused(
        &env.hull(&["run", "--cpus", "0", "busybox:cli", "true"]),
        "range of CPUs",
    );
    assert_refused(
        &env.hull(&["run", "-w", "relative", "busybox:cli", "true"]),
        "absolute path",
    );
    assert_refused(
        &env.hull(&["run", "-h", "bad/host", "busybox:cli", "true"]),
        "invalid hostname",
    );
    assert_refused(
        &env.hull(&["run", "--entrypoint", "", "busybox:cli"]),
        "no command specified",
    );
    assert_refused(&env.hull(&["run", "NOT/A/Valid:ref:x", "true"]), "");
    assert!(env.containers().is_empty());
    // Usage errors are clap's, exit 2.
    assert_eq!(
        env.hull(&["run", "--no-such-flag", "busybox:cli"]).status.code(),
        Some(2)
    );
}

#[test]
fn created_containers_are_listed_named_and_removed() {
    let env = Env::new();
    let out = env.hull(&["create", "--name", "first", "busybox:cli", "echo", "hi"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 64);
    assert_refused(
        &env.hull(&["create", "--name", "first", "busybox:cli"]),
        "is already in use",
    );
    let ps = text(
        &env.hull(&["ps", "-a", "--format", "{{.ID}} {{.Names}} {{.Status}} {{.Command}}"])
            .stdout,
    );
    assert_eq!(ps.trim(), format!("{} first Created \"echo hi\"", &id[..12]));
    assert!(text(&env.hull(&["ps"]).stdout).lines().count() == 1, "only the header");
    let inspect: serde_json::Value = serde_json::from_slice(&env.hull(&["inspect", "first"]).stdout).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["State"]["Status"], "created");
    assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["echo", "hi"]));
    // The writable disk is a sparse ext4 image.
    let upper = env.containers()[0].join("upper.img");
    let meta = std::fs::metadata(&upper).unwrap();
    assert!(meta.len() >= 1 << 30);
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 64 << 20, "sparse");
    // A prefix of the id finds it too.
    assert_eq!(text(&env.hull(&["rm", &id[..8]]).stdout).trim(), &id[..8]);
    assert!(env.containers().is_empty());
    assert_refused(&env.hull(&["rm", "first"]), "No such container: first");
}

#[test]
fn a_vm_that_never_boots_gives_a_clear_error() {
    let env = Env::new();
    // Not a kernel at all: the VMM refuses it and the run reports why.
    let not_a_kernel = env.dir.path().join("vmlinux");
    std::fs::write(&not_a_kernel, b"this is not an ELF kernel").unwrap();
    let out = env
        .command()
        .args(["run", "--name", "broken", "busybox:cli", "true"])
        .env("HULL_KERNEL", &not_a_kernel)
        .env("HULL_BOOT_TIMEOUT", "20")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("the VM did not come up"), "{err}");
    let inspect: serde_json::Value = serde_json::from_slice(&env.hull(&["inspect", "broken"]).stdout).unwrap();
    assert_eq!(inspect[0]["State"]["Status"], "exited");
    assert_eq!(inspect[0]["State"]["ExitCode"], 125);
    assert!(inspect[0]["State"]["Error"]
        .as_str()
        .unwrap()
        .contains("did not come up"));
    assert!(env.hull(&["rm", "broken"]).status.success());
}
