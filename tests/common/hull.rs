//! The `hull` binary, run with a store and a home of its own.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use base64::Engine;
use tempfile::TempDir;

/// Docker's exit code for a failure of the tool itself.
pub const EXIT_FAILURE: i32 = 125;

pub struct Hull {
    dir: TempDir,
    /// `$HULL_ROOT`, created by hull itself on first use.
    pub root: PathBuf,
}

impl Default for Hull {
    fn default() -> Self {
        Hull::new()
    }
}

impl Hull {
    pub fn new() -> Hull {
        let dir = tempfile::Builder::new()
            .prefix("hull-test-")
            .tempdir()
            .expect("temp dir");
        for sub in ["home", "docker", "work"] {
            fs::create_dir(dir.path().join(sub)).expect("create test dir");
        }
        let root = dir.path().join("store");
        Hull { dir, root }
    }

    /// `$HOME` of the hull processes.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// `$XDG_DATA_HOME` of the hull processes.
    pub fn xdg_data_home(&self) -> PathBuf {
        self.dir.path().join("home/.local/share")
    }

    /// A scratch directory for the test's own files.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hull"));
        cmd.args(args)
            .env("HULL_ROOT", &self.root)
            .env("HOME", self.dir.path().join("home"))
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("XDG_DATA_HOME", self.xdg_data_home())
            .env_remove("HULL_INSECURE_REGISTRIES")
            .env_remove("RUST_LOG")
            .current_dir(self.work())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hull")
    }

    /// Runs hull expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hull {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs hull expecting exit 125 and one `hull: ` line on stderr; returns that line.
    pub fn fails(&self, args: &[&str]) -> String {
        check_failure(args, self.run(args))
    }

    /// Runs hull as [`output_with_file_size_limit`] does.
    pub fn run_with_file_size_limit(&self, args: &[&str], max_file_bytes: u64) -> Output {
        output_with_file_size_limit(self.command(args), max_file_bytes)
    }

    /// Writes `$DOCKER_CONFIG/config.json` with credentials for `registry` as `auth`.
    pub fn login(&self, registry: &str, user: &str, password: &str) {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.write_docker_config(serde_json::json!({ "auths": { registry: { "auth": auth } } }));
    }

    /// `$DOCKER_CONFIG/config.json` of the hull processes.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker/config.json")
    }

    pub fn write_docker_config(&self, config: serde_json::Value) {
        let path = self.dir.path().join("docker/config.json");
        fs::write(path, serde_json::to_vec_pretty(&config).unwrap()).expect("write config.json");
    }

    /// `hull load -i` of the OCI layout at `layout`, as a tar archive.
    pub fn load_layout(&self, layout: &std::path::Path) {
        let name = layout.file_name().expect("layout name").to_string_lossy();
        let tar = self.work().join(format!("{name}.tar"));
        let mut cmd = Command::new("tar");
        cmd.arg("-C").arg(layout).arg("-cf").arg(&tar).arg(".");
        super::process::run_ok(cmd);
        self.ok(&["load", "-q", "-i", tar.to_str().expect("utf-8 path")]);
    }

    /// `hull create ARGS...`: a container recorded but never booted. The VM's files
    /// are placeholders (create only checks that they exist); `/dev/kvm` must be
    /// usable, as for every create. Returns the container's id.
    pub fn create_container(&self, args: &[&str]) -> String {
        let out = self.create_command(args).output().expect("run hull create");
        assert!(
            out.status.success(),
            "hull create {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout").trim().to_string()
    }

    /// The command `hull create --network none ARGS...`, with placeholders for the
    /// VM's files (create only checks that they exist).
    pub fn create_command(&self, args: &[&str]) -> Command {
        let assets = self.work().join("vm-assets");
        fs::create_dir_all(&assets).expect("create assets dir");
        for name in ["vmm", "hull-agent", "vmlinux"] {
            fs::write(assets.join(name), b"").expect("write placeholder");
        }
        let mut cmd = self.command(&[&["create", "--network", "none"], args].concat());
        cmd.env("HULL_VMM", assets.join("vmm"))
            .env("HULL_AGENT", assets.join("hull-agent"))
            .env("HULL_KERNEL", assets.join("vmlinux"))
            .env("XDG_RUNTIME_DIR", self.dir.path());
        cmd
    }

    /// `hull image inspect REF`, the first object of the array.
    pub fn inspect(&self, reference: &str) -> serde_json::Value {
        let out = self.ok(&["image", "inspect", reference]);
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("image inspect printed no JSON ({e}):\n{out}"));
        let array = v.as_array().expect("image inspect prints a JSON array");
        assert_eq!(array.len(), 1, "one object per reference: {out}");
        array[0].clone()
    }
}

/// Runs `cmd` with `RLIMIT_FSIZE` set to `max_file_bytes` and SIGXFSZ ignored, so a
/// write past the limit fails with EFBIG as on a full disk.
pub fn output_with_file_size_limit(mut cmd: Command, max_file_bytes: u64) -> Output {
    // SAFETY: setrlimit and signal are async-signal-safe; only they run before exec.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: max_file_bytes,
                rlim_max: max_file_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd.output().expect("run hull")
}

/// Asserts Docker-style failure: exit 125, exactly one non-empty stderr line starting
/// `hull: `. Returns that line.
pub fn check_failure(args: &[&str], out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(EXIT_FAILURE),
        "hull {args:?}: want exit 125, got {}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "hull {args:?}: want one stderr line, got:\n{stderr}");
    assert!(
        lines[0].starts_with("hull: "),
        "hull {args:?}: stderr line must start `hull: `: {stderr}"
    );
    // Shown with the test's output (`--no-capture`), to review the wording.
    eprintln!("hull {args:?} -> {}", lines[0]);
    lines[0].to_string()
}

/// Non-empty lines of some output.
pub fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Columns of a table row, split on runs of two or more spaces as Docker pads them.
pub fn columns(row: &str) -> Vec<String> {
    row.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}
