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
    // Limits out of range, before anything is created.
    assert_refused(
        &env.hull(&["run", "--shm-size", "0", "busybox:cli", "true"]),
        "--shm-size",
    );
    assert_refused(
        &env.hull(&["run", "--pids-limit", "-5", "busybox:cli", "true"]),
        "--pids-limit",
    );
    assert_refused(
        &env.hull(&["run", "-m", "65g", "busybox:cli", "true"]),
        "more than a VM can have",
    );
    assert_refused(
        &env.hull(&["run", "--memory-swap", "1g", "busybox:cli", "true"]),
        "Memory limit when using Memoryswap",
    );
    assert_refused(
        &env.hull(&["run", "--cpuset-cpus", "0-999", "busybox:cli", "true"]),
        "Requested CPUs are not available",
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
fn add_host_values_are_checked_before_anything_is_created_and_recorded() {
    let env = Env::new();
    for bad in ["foo", ":1.2.3.4", "a b:1.2.3.4", "a:notanip", "-a:1.2.3.4", "a:::1"] {
        let flag = format!("--add-host={bad}");
        assert_refused(&env.hull(&["create", &flag, "busybox:cli", "true"]), "invalid argument");
    }
    assert_refused(
        &env.hull(&[
            "run",
            "--network",
            "none",
            "--add-host",
            "host.docker.internal:host-gateway",
            "busybox:cli",
            "true",
        ]),
        "--network none",
    );
    assert!(env.containers().is_empty());
    let out = env.hull(&[
        "create",
        "--name",
        "hosts",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--add-host",
        "db:192.168.1.9",
        "busybox:cli",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let inspect: serde_json::Value = serde_json::from_slice(&env.hull(&["inspect", "hosts"]).stdout).unwrap();
    assert_eq!(
        inspect[0]["HostConfig"]["ExtraHosts"],
        serde_json::json!(["host.docker.internal:host-gateway", "db:192.168.1.9"])
    );
    assert!(env.hull(&["create", "--name", "plain", "busybox:cli"]).status.success());
    let inspect: serde_json::Value = serde_json::from_slice(&env.hull(&["inspect", "plain"]).stdout).unwrap();
    assert!(inspect[0]["HostConfig"]["ExtraHosts"].is_null(), "{inspect}");
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

/// A tar built by Python's tarfile, entry by entry: (name, kind, data or link target).
fn python_tar(path: &Path, entries: &[(&str, &str, &str)]) {
    let spec = serde_json::to_string(entries).unwrap();
    let script = r#"
import io, json, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    for name, kind, data in json.loads(sys.argv[2]):
        i = tarfile.TarInfo(name)
        i.mode = 0o755
        if kind == "dir":
            i.type = tarfile.DIRTYPE
            t.addfile(i)
        elif kind == "symlink":
            i.type = tarfile.SYMTYPE; i.linkname = data
            t.addfile(i)
        else:
            b = data.encode(); i.size = len(b)
            t.addfile(i, io.BytesIO(b))
"#;
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", script, path.to_str().unwrap(), &spec])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn stray_temps(root: &Path) -> usize {
    std::fs::read_dir(root.join("tmp")).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn import_makes_a_one_layer_image_that_flattens() {
    let env = Env::new();
    let tar = env.dir.path().join("fs.tar");
    python_tar(
        &tar,
        &[
            ("bin", "dir", ""),
            ("bin/hello", "file", "#!/bin/sh\necho hello\n"),
            ("etc", "dir", ""),
            ("etc/motd", "symlink", "/bin/hello"),
        ],
    );
    // gzip it: import reads plain, gzip and zstd streams.
    assert!(Command::new("gzip").arg("-k").arg(&tar).status().unwrap().success());
    let gz = format!("{}.gz", tar.display());
    let out = env.hull(&[
        "import",
        "-m",
        "from a tarball",
        "-c",
        "CMD [\"/bin/hello\"]",
        "-c",
        "ENV GREETING=hi",
        &gz,
        "imported:v1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let inspect: serde_json::Value =
        serde_json::from_slice(&env.hull(&["image", "inspect", "imported:v1"]).stdout).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["Config"]["Cmd"], serde_json::json!(["/bin/hello"]));
    assert_eq!(inspect[0]["Config"]["Env"], serde_json::json!(["GREETING=hi"]));
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let history = text(&env.hull(&["image", "history", "--no-trunc", "imported:v1"]).stdout);
    assert!(
        history.contains("hull import") && history.contains("from a tarball"),
        "{history}"
    );
    // The layer's digest is the sha256 of the uncompressed tar (its diff_id).
    let plain = std::fs::read(&tar).unwrap();
    let diff_id = inspect[0]["RootFS"]["Layers"][0].as_str().unwrap().to_owned();
    let sha = Command::new("sha256sum").arg(&tar).output().unwrap();
    assert_eq!(
        diff_id,
        format!("sha256:{}", &text(&sha.stdout)[..64]),
        "{} bytes",
        plain.len()
    );
    // The flattener accepts it: the image can become a root disk.
    let out = env.hull(&["image", "rootfs", "imported:v1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn import_of_a_bad_tar_leaves_nothing() {
    let env = Env::new();
    let images_before = text(&env.hull(&["images", "-q"]).stdout);
    let escaping = env.dir.path().join("escape.tar");
    python_tar(&escaping, &[("../../outside", "file", "x")]);
    let garbage = env.dir.path().join("garbage.tar");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    for (file, needle) in [(&escaping, "'..'"), (&garbage, "tar")] {
        let out = env.hull(&["import", file.to_str().unwrap(), "bad:import"]);
        assert_refused(&out, needle);
    }
    assert_refused(
        &env.hull(&["import", "-c", "RUN rm -rf /", escaping.to_str().unwrap()]),
        "unknown instruction",
    );
    assert_eq!(text(&env.hull(&["images", "-q"]).stdout), images_before);
    assert_eq!(stray_temps(&env.root()), 0);
}

#[test]
fn file_commands_name_missing_containers_and_bad_arguments() {
    let env = Env::new();
    assert_refused(&env.hull(&["diff", "ghost"]), "No such container: ghost");
    assert_refused(&env.hull(&["cp", "ghost:/etc/hosts", "."]), "No such container: ghost");
    assert_refused(&env.hull(&["cp", "a", "b"]), "at least one container");
    assert_refused(&env.hull(&["commit", "ghost", "x:y"]), "No such container: ghost");
    assert_refused(
        &env.hull(&["export", "-o", "/tmp/x.tar", "ghost"]),
        "No such container: ghost",
    );
    assert!(env.containers().is_empty());
}

impl Env {
    /// `hull ARGS` where create finds a virtiofsd: it only checks that one exists, and
    /// these tests never start a VM with mounts.
    fn hull_with_virtiofsd(&self, args: &[&str]) -> Output {
        self.command()
            .env("HULL_VIRTIOFSD", "/bin/true")
            .args(args)
            .output()
            .unwrap()
    }

    fn volumes(&self) -> Vec<String> {
        std::fs::read_dir(self.root().join("volumes"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[test]
fn bad_mounts_are_refused_before_anything_is_created() {
    let env = Env::new();
    let dir = env.dir.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    let file = env.dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let (dir, file) = (dir.to_str().unwrap(), file.to_str().unwrap());
    let missing = env.dir.path().join("missing");
    let missing = missing.to_str().unwrap();
    let v = |spec: &str| vec!["-v".to_owned(), spec.to_owned()];
    let flag = |name: &str, spec: &str| vec![name.to_owned(), spec.to_owned()];
    let many = |n: usize, each: &dyn Fn(usize) -> Vec<String>| (0..n).flat_map(each).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (v(&format!("{missing}:/data")), "bind source path does not exist"),
        (
            flag("--mount", &format!("type=bind,source={missing},target=/data")),
            "bind source path does not exist",
        ),
        (v(&format!("{file}:/data")), "not a directory"),
        (v(&format!("{dir}:data")), "must be absolute"),
        (v(&format!("{dir}:/")), "destination can't be '/'"),
        (v(&format!("{dir}:/a/../b")), "'..'"),
        (v(&format!("{dir}:/data:z")), "unsupported option \"z\""),
        (v("/data"), "anonymous volumes are not supported"),
        (v("bad*name:/data"), "invalid characters for a local volume name"),
        (v("./relative:/data"), "invalid characters for a local volume name"),
        (
            [v(&format!("{dir}:/a")), v(&format!("{dir}:/a/"))].concat(),
            "Duplicate mount point: /a",
        ),
        (flag("--tmpfs", "/x:uid=0"), "unsupported tmpfs option"),
        (flag("--tmpfs", "/x:size=lots"), "invalid tmpfs size"),
        (
            flag("--mount", "type=tmpfs,source=/x,target=/y"),
            "source is not allowed",
        ),
        (flag("--mount", "type=bind,target=/y"), "source is required"),
        (
            flag("--mount", "type=bind,src=/x,dst=/y,bind-propagation=shared"),
            "unsupported field",
        ),
        (
            many(17, &|i| flag("--tmpfs", &format!("/t{i}"))),
            "too many mounts (17): at most 16",
        ),
        (
            many(13, &|i| v(&format!("{dir}:/s{i}"))),
            "too many bind mounts and volumes (13): at most 12",
        ),
    ];
    for (flags, needle) in &cases {
        let mut args = vec!["run"];
        args.extend(flags.iter().map(String::as_str));
        args.extend(["busybox:cli", "true"]);
        assert_refused(&env.hull_with_virtiofsd(&args), needle);
    }
    // virtiofsd is needed to share a directory, and its absence is named.
    let out = env
        .command()
        .env("HULL_VIRTIOFSD", "/nonexistent/virtiofsd")
        .args(["run", "-v", &format!("{dir}:/data"), "busybox:cli", "true"])
        .output()
        .unwrap();
    assert_refused(&out, "virtiofsd not found");
    assert!(env.containers().is_empty());
    assert!(env.volumes().is_empty(), "{:?}", env.volumes());
}

#[test]
fn volumes_are_created_listed_inspected_and_removed() {
    let env = Env::new();
    assert_eq!(text(&env.hull(&["volume", "create", "vol1"]).stdout), "vol1\n");
    // Creating an existing volume returns it, as Docker does.
    assert_eq!(text(&env.hull(&["volume", "create", "vol1"]).stdout), "vol1\n");
    let random = text(&env.hull(&["volume", "create"]).stdout).trim().to_owned();
    assert_eq!(random.len(), 64, "{random}");
    let ls = text(&env.hull(&["volume", "ls"]).stdout);
    assert!(ls.starts_with("DRIVER    VOLUME NAME\n"), "{ls}");
    assert!(ls.contains("local     vol1\n"), "{ls}");
    let quiet = text(&env.hull(&["volume", "ls", "-q"]).stdout);
    let mut names: Vec<&str> = quiet.lines().collect();
    names.sort();
    let mut expected = vec!["vol1", random.as_str()];
    expected.sort();
    assert_eq!(names, expected);
    let out = env.hull(&["volume", "inspect", "vol1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Name"], "vol1");
    assert_eq!(v[0]["Driver"], "local");
    let mountpoint = env.root().join("volumes/vol1/_data");
    assert_eq!(v[0]["Mountpoint"], mountpoint.to_str().unwrap());
    assert!(mountpoint.is_dir());
    assert!(v[0]["CreatedAt"].as_str().unwrap().ends_with('Z'));
    assert_refused(&env.hull(&["volume", "inspect", "ghost"]), "No such volume: ghost");
    assert_refused(&env.hull(&["volume", "rm", "ghost"]), "No such volume: ghost");
    assert!(env.hull(&["volume", "rm", "-f", "ghost"]).status.success());
    assert_refused(&env.hull(&["volume", "create", "a/b"]), "invalid volume name");
    assert_eq!(text(&env.hull(&["volume", "rm", "vol1"]).stdout), "vol1\n");
    assert!(!env.root().join("volumes/vol1").exists());
    assert_eq!(text(&env.hull(&["volume", "create", "named"]).stdout), "named\n");
    let labels = |name: &str| {
        let v: serde_json::Value = serde_json::from_slice(&env.hull(&["volume", "inspect", name]).stdout).unwrap();
        v[0]["Labels"].clone()
    };
    assert_eq!(
        labels(&random),
        serde_json::json!({ "com.docker.volume.anonymous": "" })
    );
    assert_eq!(labels("named"), serde_json::json!({}));
    // Without -a, as in Docker, only the anonymous volume goes.
    let out = env.hull(&["volume", "prune", "-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&random), "{}", text(&out.stdout));
    assert_eq!(text(&env.hull(&["volume", "ls", "-q"]).stdout), "named\n");
    let out = env.hull_with_input(&["volume", "prune", "-a"], "n\n");
    assert!(
        text(&out.stdout).contains("remove all local volumes"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(text(&env.hull(&["volume", "ls", "-q"]).stdout), "named\n");
    let out = env.hull(&["volume", "prune", "-a", "-f"]);
    assert!(text(&out.stdout).contains("named"), "{}", text(&out.stdout));
    assert!(text(&env.hull(&["volume", "ls", "-q"]).stdout).is_empty());
}

#[test]
fn a_volume_in_use_stays_and_inspect_shows_mounts() {
    let env = Env::new();
    let dir = env.dir.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    // Recorded canonical: a symlink to the directory is resolved at create.
    let link = env.dir.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let out = env.hull_with_virtiofsd(&[
        "create",
        "--name",
        "user",
        "-v",
        "vol2:/v",
        "-v",
        &format!("{}:/data:ro", link.display()),
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "busybox:cli",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The named volume was created on first use.
    assert_eq!(text(&env.hull(&["volume", "ls", "-q"]).stdout), "vol2\n");
    let inspect: serde_json::Value = serde_json::from_slice(&env.hull(&["inspect", "user"]).stdout).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    let by_target = |t: &str| mounts.iter().find(|m| m["Destination"] == t).unwrap().clone();
    let volume = by_target("/v");
    assert_eq!(
        (&volume["Type"], &volume["Name"], &volume["RW"]),
        (&"volume".into(), &"vol2".into(), &true.into())
    );
    assert_eq!(
        volume["Source"],
        env.root().join("volumes/vol2/_data").to_str().unwrap()
    );
    let bind = by_target("/data");
    let canonical = std::fs::canonicalize(&dir).unwrap();
    assert_eq!(
        (&bind["Type"], &bind["Source"], &bind["Mode"], &bind["RW"]),
        (
            &"bind".into(),
            &canonical.to_str().unwrap().into(),
            &"ro".into(),
            &false.into()
        )
    );
    assert_eq!(by_target("/scratch")["Type"], "tmpfs");
    // In use, even by a container that never ran: not removed, -f or not.
    assert_refused(&env.hull(&["volume", "rm", "vol2"]), "volume is in use");
    assert_refused(&env.hull(&["volume", "rm", "-f", "vol2"]), "volume is in use");
    assert!(env.hull(&["volume", "prune", "-f"]).status.success());
    assert_eq!(text(&env.hull(&["volume", "ls", "-q"]).stdout), "vol2\n");
    assert!(env.hull(&["rm", "user"]).status.success());
    assert_eq!(text(&env.hull(&["volume", "rm", "vol2"]).stdout), "vol2\n");
    assert!(dir.is_dir(), "a bind source is never touched");
}

impl Env {
    /// `hull ARGS` with `input` on stdin.
    fn hull_with_input(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that exits without reading (a refused flag) closes the pipe.
        match child.stdin.take().unwrap().write_all(input.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("writing stdin: {e}"),
            _ => {}
        }
        child.wait_with_output().unwrap()
    }

    /// Creates a container named `name`; returns its id.
    fn create(&self, name: &str) -> String {
        let out = self.hull(&["create", "--name", name, "busybox:cli", "true"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    /// The names `ps -a` lists, sorted.
    fn names(&self) -> Vec<String> {
        let out = self.hull(&["ps", "-a", "--format", "{{.Names}}"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut names: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
        names.sort();
        names
    }
}

fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn docker_aliases_and_flags_reach_the_same_commands() {
    let env = Env::new();
    let id = env.create("first");
    // container ls, ps and list are one command.
    let ls = assert_ok(&env.hull(&["container", "ls", "-a", "-q", "--no-trunc"]));
    assert_eq!(ls.trim(), id);
    for alias in ["ps", "list"] {
        assert_eq!(
            assert_ok(&env.hull(&["container", alias, "-a", "-q", "--no-trunc"])),
            ls
        );
    }
    // history is image history.
    let history = assert_ok(&env.hull(&["image", "history", "busybox:cli"]));
    assert!(history.starts_with("IMAGE"), "{history}");
    assert_eq!(assert_ok(&env.hull(&["history", "busybox:cli"])), history);
    assert_refused(&env.hull(&["history", "ghost:none"]), "ghost");
    // stop takes --timeout, -t and the old --time; a container that never ran stops
    // at once.
    for flag in ["--timeout", "-t", "--time"] {
        assert_eq!(assert_ok(&env.hull(&["stop", flag, "1", "first"])), "first\n");
        assert_eq!(
            assert_ok(&env.hull(&["container", "stop", flag, "1", "first"])),
            "first\n"
        );
    }
    assert_eq!(env.hull(&["stop", "--timeout", "soon", "first"]).status.code(), Some(2));
    // restart too (no VM here: only the flags and the lookup are checked).
    for flag in ["--timeout", "-t", "--time"] {
        assert_refused(&env.hull(&["restart", flag, "1", "ghost"]), "No such container: ghost");
    }
    assert_refused(&env.hull(&["restart", "-s", "NOPE", "first"]), "invalid signal: NOPE");
    // rm -v / --volumes: hull has no anonymous volumes, so only the container goes; a
    // named volume stays, as in Docker.
    let out = env.hull_with_virtiofsd(&["create", "--name", "vol-user", "-v", "kept:/data", "busybox:cli"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(assert_ok(&env.hull(&["rm", "-v", "vol-user"])), "vol-user\n");
    assert_eq!(env.volumes(), vec!["kept".to_owned()]);
    env.create("second");
    assert_eq!(
        assert_ok(&env.hull(&["container", "remove", "--volumes", "second"])),
        "second\n"
    );
    assert_eq!(assert_ok(&env.hull(&["container", "rm", "first"])), "first\n");
    assert!(env.containers().is_empty());
    assert_refused(&env.hull(&["container", "remove", "first"]), "No such container: first");
}

#[test]
fn rename_follows_dockers_rules() {
    let env = Env::new();
    let one = env.create("one");
    let two = env.create("two");
    // Success prints nothing; the old name is free again at once.
    let out = env.hull(&["rename", "one", "uno"]);
    assert_eq!(assert_ok(&out), "");
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(env.names(), ["two", "uno"]);
    let inspect: serde_json::Value = serde_json::from_slice(&env.hull(&["inspect", "uno"]).stdout).unwrap();
    assert_eq!(
        (&inspect[0]["Id"], &inspect[0]["Name"]),
        (&one.as_str().into(), &"/uno".into())
    );
    assert_refused(&env.hull(&["rename", "one", "eins"]), "No such container: one");
    assert_eq!(env.create("one").len(), 64);
    // By id prefix, with `container rename`, and a leading slash as Docker allows.
    assert_eq!(assert_ok(&env.hull(&["container", "rename", &one[..10], "/dos"])), "");
    assert_eq!(env.names(), ["dos", "one", "two"]);
    // The errors, each one line with hull's exit code, nothing changed.
    let conflict = format!(
        "Conflict. The container name \"/two\" is already in use by container \"{two}\". You have to remove (or rename) that container to be able to reuse that name."
    );
    assert_refused(&env.hull(&["rename", "dos", "two"]), &conflict);
    assert_refused(&env.hull(&["rename", "/dos", "/two"]), &conflict);
    assert_refused(
        &env.hull(&["rename", "two", "two"]),
        "Renaming a container with the same name as its current name",
    );
    assert_refused(&env.hull(&["rename", "two", "/two"]), "same name as its current name");
    assert_refused(&env.hull(&["rename", "ghost", "spirit"]), "No such container: ghost");
    for bad in ["a b", "_x", "x", "we/b", "dash!"] {
        assert_refused(&env.hull(&["rename", "two", bad]), "invalid container name");
    }
    assert_refused(
        &env.hull(&["rename", "two", ""]),
        "Neither old nor new names may be empty",
    );
    assert_refused(
        &env.hull(&["rename", "", "x1"]),
        "Neither old nor new names may be empty",
    );
    assert_eq!(env.names(), ["dos", "one", "two"]);
    // Usage errors are clap's.
    assert_eq!(env.hull(&["rename", "two"]).status.code(), Some(2));
    assert_eq!(env.hull(&["rename", "a", "b", "c"]).status.code(), Some(2));
}

#[test]
fn a_rename_and_a_create_to_one_name_never_both_win() {
    let env = Env::new();
    for round in 0..4 {
        let old = format!("old{round}");
        env.create(&old);
        let spawn = |args: &[&str]| {
            env.command()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (create, rename) = (
            spawn(&["create", "--name", "racer", "busybox:cli", "true"]),
            spawn(&["rename", &old, "racer"]),
        );
        let (create, rename) = (create.wait_with_output().unwrap(), rename.wait_with_output().unwrap());
        assert_ne!(
            create.status.success(),
            rename.status.success(),
            "exactly one wins: create {:?} {}, rename {:?} {}",
            create.status,
            text(&create.stderr),
            rename.status,
            text(&rename.stderr)
        );
        let loser = if create.status.success() { &rename } else { &create };
        assert_refused(loser, "is already in use");
        let names = env.names();
        assert_eq!(names.iter().filter(|n| *n == "racer").count(), 1, "{names:?}");
        assert_eq!(assert_ok(&env.hull(&["rm", "racer"])), "racer\n");
    }
}

#[test]
fn container_prune_removes_stopped_containers_as_docker_does() {
    let env = Env::new();
    let (a, b) = (env.create("a1"), env.create("b1"));
    // Without -f it asks; no answer (end of input) is no.
    let out = env.hull(&["container", "prune"]);
    assert_eq!(
        assert_ok(&out),
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "
    );
    let out = env.hull_with_input(&["container", "prune"], "n\n");
    assert!(!assert_ok(&out).contains("Deleted"));
    assert_eq!(env.containers().len(), 2);
    // Bad filters are refused before anything is asked or removed.
    for (filter, needle) in [
        ("color=red", "invalid filter 'color'"),
        ("status=exited", "invalid filter 'status'"),
        ("until", "bad format of filter (expected name=value)"),
        ("until=soon", "failed to parse value as time or duration: \"soon\""),
    ] {
        let out = env.hull_with_input(&["container", "prune", "--filter", filter], "y\n");
        assert_refused(&out, needle);
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
    assert_refused(
        &env.hull(&[
            "container",
            "prune",
            "-f",
            "--filter",
            "until=1h",
            "--filter",
            "until=2h",
        ]),
        "more than one until filter specified",
    );
    // Filters that take neither: created less than an hour ago, labels hull's
    // containers do not have.
    for filter in [
        "until=1h",
        "until=2001-01-01T00:00:00Z",
        "until=978307200",
        "label=tier",
        "label=tier=db",
    ] {
        let out = env.hull(&["container", "prune", "-f", "--filter", filter]);
        assert_eq!(assert_ok(&out), "Total reclaimed space: 0B\n", "{filter}");
    }
    assert_eq!(env.containers().len(), 2);
    // Yes on stdin, and filters that take both.
    let out = env.hull_with_input(
        &[
            "container",
            "prune",
            "--filter",
            "until=2999-01-01T00:00:00Z",
            "--filter",
            "label!=tier",
        ],
        "y\n",
    );
    let printed = assert_ok(&out);
    let expected = format!(
        "WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] Deleted Containers:\n{a}\n{b}\n\nTotal reclaimed space: "
    );
    assert!(printed.starts_with(&expected), "{printed}");
    let size = printed.trim_end().rsplit(' ').next().unwrap();
    assert!(size.ends_with('B') && size != "0B", "{printed}");
    assert!(env.containers().is_empty());
    assert_eq!(
        assert_ok(&env.hull(&["container", "prune", "-f"])),
        "Total reclaimed space: 0B\n"
    );
}

#[test]
fn version_names_the_build_and_what_a_vm_boots_from() {
    let env = Env::new();
    let kernel = env.dir.path().join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF...Linux version 6.1.99-test (b@h) (gcc) #1 SMP\n\0").unwrap();
    let out = env
        .command()
        .arg("version")
        .env("HULL_KERNEL", &kernel)
        .env("HULL_VMM", "/bin/true")
        .env("HULL_AGENT", "/bin/sh")
        .output()
        .unwrap();
    let printed = assert_ok(&out);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    for line in [
        "Client:\n".to_owned(),
        format!(" Version:           {}\n", env!("CARGO_PKG_VERSION")),
        " Rust version:      rustc ".to_owned(),
        format!(" OS/Arch:           linux/{arch}\n"),
        "VM:\n Kernel:\n  Version:          6.1.99-test\n".to_owned(),
        format!("  Path:             {}\n", kernel.display()),
        " VMM:\n  Path:             /bin/true\n".to_owned(),
        " Guest agent:\n  Path:             /bin/sh\n".to_owned(),
    ] {
        assert!(printed.contains(&line), "{line:?} in {printed}");
    }
    // A missing asset is named, and is no failure.
    let out = env
        .command()
        .arg("version")
        .env("HULL_KERNEL", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert!(assert_ok(&out).contains(" Kernel:\n  Version:          unknown\n  Path:             not found\n"));
    assert!(
        text(&out.stderr).contains("WARNING: the guest kernel not found (looked in: HULL_KERNEL=/nonexistent/vmlinux)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.hull(&["version", "--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn info_counts_containers_and_images_and_shows_the_default_vm() {
    use hull::container::resources;
    let env = Env::new();
    env.create("c1");
    env.create("c2");
    let kernel = env.dir.path().join("vmlinux");
    std::fs::write(&kernel, b"Linux version 6.1.5 (x@y)\n").unwrap();
    let info = |args: &[&str]| {
        let out = env
            .command()
            .args(args)
            .env("HULL_KERNEL", &kernel)
            .env("HULL_VMM", "/bin/true")
            .env("HULL_AGENT", "/bin/sh")
            .output()
            .unwrap();
        assert_ok(&out)
    };
    let printed = info(&["info"]);
    let vm = resources::plan(&resources::ResourceFlags::default(), resources::host_cpus()).unwrap();
    for line in [
        "Containers: 2\n Running: 0\n Paused: 0\n Stopped: 2\nImages: 1\n".to_owned(),
        format!("Hull Root Dir: {}\n", env.root().display()),
        format!("Default VM:\n CPUs: {}\n", vm.vcpus),
        format!("Guest Kernel: {}\n Version: 6.1.5\n", kernel.display()),
        "VMM: /bin/true\nGuest Agent: /bin/sh\n".to_owned(),
        "KVM: ".to_owned(),
        format!("CPUs: {}\n", resources::host_cpus()),
    ] {
        assert!(printed.contains(&line), "{line:?} in {printed}");
    }
    let memory = printed.lines().find(|l| l.starts_with(" Total Memory: ")).unwrap();
    let gib = f64::from(vm.vm_memory_mib) / 1024.0;
    assert_eq!(memory, format!(" Total Memory: {gib}GiB"), "{printed}");
    assert_eq!(info(&["system", "info"]), printed);
    assert!(env.hull(&["rm", "c1", "c2"]).status.success());
    assert!(info(&["info"]).contains("Containers: 0\n"));
}

fn inspect(env: &Env, name: &str) -> serde_json::Value {
    let out = env.hull(&["inspect", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0].clone()
}

#[test]
fn labels_are_recorded_shown_and_filtered() {
    let env = Env::new();
    let file = env.dir.path().join("labels");
    std::fs::write(&file, "# team labels\ntier=db\nteam=core\n").unwrap();
    let file_arg = file.to_str().unwrap();
    let create = |args: &[&str]| assert_ok(&env.hull(&[&["create"], args, &["busybox:cli", "true"]].concat()));
    create(&["--name", "web", "-l", "tier=web", "--label", "flag"]);
    create(&["--name", "db", "--label-file", file_arg, "-l", "team=ops"]);
    create(&["--name", "bare"]);
    assert_eq!(
        inspect(&env, "web")["Config"]["Labels"],
        serde_json::json!({"tier": "web", "flag": ""})
    );
    assert_eq!(
        inspect(&env, "db")["Config"]["Labels"],
        serde_json::json!({"tier": "db", "team": "ops"})
    );
    assert_eq!(inspect(&env, "bare")["Config"]["Labels"], serde_json::json!({}));
    let ps = |filters: &[&str]| {
        let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        let mut names: Vec<String> = assert_ok(&env.hull(&args)).lines().map(String::from).collect();
        names.sort();
        names
    };
    assert_eq!(ps(&["label=tier"]), ["db", "web"]);
    assert_eq!(ps(&["label=tier=web"]), ["web"]);
    assert_eq!(ps(&["label!=tier"]), ["bare"]);
    assert_eq!(ps(&["label=tier", "label=team=ops"]), ["db"]);
    assert_eq!(ps(&["name=we"]), ["web"]);
    assert_eq!(
        assert_ok(&env.hull(&["ps", "-a", "-f", "name=db", "--format", "{{.Labels}}"])).trim(),
        "team=ops,tier=db"
    );
    assert_refused(&env.hull(&["ps", "-f", "color=red"]), "invalid filter 'color'");
    assert_refused(
        &env.hull(&["create", "-l", "=v", "busybox:cli"]),
        "invalid label '=v': empty name",
    );
    assert_refused(
        &env.hull(&["create", "--label-file", "/nonexistent/labels", "busybox:cli"]),
        "/nonexistent/labels",
    );
    // container prune takes only what the label filter names.
    assert_ok(&env.hull(&["container", "prune", "-f", "--filter", "label=tier=web"]));
    assert_eq!(ps(&[]), ["bare", "db"]);
    assert_ok(&env.hull(&["container", "prune", "-f", "--filter", "label!=tier"]));
    assert_eq!(ps(&[]), ["db"]);
}

#[test]
fn cidfile_gets_the_id_and_an_existing_one_is_refused() {
    let env = Env::new();
    let cid = env.dir.path().join("cid");
    let cid_arg = cid.to_str().unwrap();
    let id = assert_ok(&env.hull(&["create", "--cidfile", cid_arg, "busybox:cli", "true"]));
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim());
    let out = env.hull(&["create", "--cidfile", cid_arg, "busybox:cli", "true"]);
    assert_refused(
        &out,
        &format!("Container ID file found, make sure the other container isn't running or delete {cid_arg}"),
    );
    assert_eq!(env.containers().len(), 1, "nothing created");
    assert_eq!(std::fs::read_to_string(&cid).unwrap(), id.trim(), "left alone");
    // A create that fails leaves no cidfile behind.
    let other = env.dir.path().join("other");
    let out = env.hull(&[
        "create",
        "--cidfile",
        other.to_str().unwrap(),
        "--name",
        "x",
        "busybox:cli",
    ]);
    assert_refused(&out, "invalid container name");
    assert!(!other.exists());
}

#[test]
fn stop_settings_are_recorded_and_checked() {
    let env = Env::new();
    assert_ok(&env.hull(&["create", "--name", "plain", "busybox:cli", "true"]));
    let config = &inspect(&env, "plain")["Config"];
    assert_eq!(config["StopSignal"], "SIGTERM");
    assert_eq!(config["StopTimeout"], 10);
    let args = [
        "create",
        "--name",
        "set",
        "--stop-signal",
        "usr1",
        "--stop-timeout",
        "3",
    ];
    assert_ok(&env.hull(&[&args[..], &["busybox:cli", "true"]].concat()));
    let config = &inspect(&env, "set")["Config"];
    assert_eq!(config["StopSignal"], "SIGUSR1");
    assert_eq!(config["StopTimeout"], 3);
    assert_refused(
        &env.hull(&["create", "--stop-signal", "SIGNOPE", "busybox:cli"]),
        "invalid signal: SIGNOPE",
    );
    assert_refused(
        &env.hull(&["create", "--stop-timeout", "-2", "busybox:cli"]),
        "invalid stop timeout",
    );
    assert_eq!(env.containers().len(), 2);
}

#[test]
fn host_devices_and_other_platforms_are_refused_with_one_line() {
    let env = Env::new();
    for flags in [&["--device", "/dev/sda"][..], &["--gpus", "all"]] {
        for command in ["run", "create"] {
            let out = env.hull(&[&[command], flags, &["busybox:cli", "true"]].concat());
            assert_refused(&out, &format!("{} is not supported", flags[0]));
            assert_refused(&out, "host devices are not passed into guests");
        }
    }
    assert_refused(
        &env.hull(&["create", "--platform", "linux/s390x", "busybox:cli"]),
        "platform linux/s390x is not supported",
    );
    assert_refused(
        &env.hull(&["create", "--platform", "nonsense", "busybox:cli"]),
        "invalid platform",
    );
    assert_refused(
        &env.hull(&["create", "--pull", "sometimes", "busybox:cli"]),
        "invalid pull option: 'sometimes'",
    );
    assert_refused(
        &env.hull(&["create", "--pull", "never", "localhost:1/absent:1"]),
        "No such image: localhost:1/absent:1",
    );
    assert!(env.containers().is_empty());
    let host = if cfg!(target_arch = "x86_64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    assert_ok(&env.hull(&["create", "--platform", host, "--pull", "never", "busybox:cli", "true"]));
    assert_eq!(env.containers().len(), 1);
}

#[test]
fn read_only_groups_sysctls_and_ulimits_are_recorded_and_checked() {
    let env = Env::new();
    let args = [
        "create",
        "--name",
        "tuned",
        "--read-only",
        "--group-add",
        "wheel",
        "--group-add",
        "4000",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--ulimit",
        "nofile=1024:2048",
        "--ulimit",
        "core=-1",
    ];
    assert_ok(&env.hull(&[&args[..], &["busybox:cli", "true"]].concat()));
    let host = &inspect(&env, "tuned")["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["GroupAdd"], serde_json::json!(["wheel", "4000"]));
    assert_eq!(host["Sysctls"], serde_json::json!({"net.ipv4.ip_forward": "1"}));
    assert_eq!(
        host["Ulimits"],
        serde_json::json!([
            {"Name": "nofile", "Soft": 1024, "Hard": 2048},
            {"Name": "core", "Soft": -1, "Hard": -1},
        ])
    );
    assert_ok(&env.hull(&["create", "--name", "plain", "busybox:cli", "true"]));
    let host = &inspect(&env, "plain")["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], false);
    assert!(host["GroupAdd"].is_null());
    assert_refused(
        &env.hull(&["create", "--sysctl", "kernel.panic=1", "busybox:cli"]),
        "not in a separate kernel namespace",
    );
    assert_refused(
        &env.hull(&["create", "--sysctl", "nonsense", "busybox:cli"]),
        "expected KEY=VALUE",
    );
    assert_refused(
        &env.hull(&["create", "--ulimit", "bogus=1", "busybox:cli"]),
        "invalid ulimit type: bogus",
    );
    assert_refused(
        &env.hull(&["create", "--ulimit", "nofile=2:1", "busybox:cli"]),
        "soft limit must be less than or equal to hard limit",
    );
    assert_eq!(env.containers().len(), 2);
}
