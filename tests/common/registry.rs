//! Debian's `docker-registry` (distribution 2.8) started on 127.0.0.1 for one test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::process::{fixture, free_port, http_status, run_ok, wait_for, Guarded, PYTHON};

/// The one user every authenticated test registry knows.
pub const USER: &str = "hull-tester";
pub const PASSWORD: &str = "correct horse battery";

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const SERVICE: &str = "hull-test-registry";
const ISSUER: &str = "hull-test-issuer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    Anonymous,
    /// htpasswd (bcrypt) basic auth.
    Basic,
    /// Bearer tokens from a token server of our own (`auth.token`).
    Token,
}

pub struct Registry {
    /// `127.0.0.1:PORT`
    pub host: String,
    pub auth: Auth,
    // Dropped in this order: the registry, the token server it relies on, their files.
    registry: Guarded,
    _token_server: Option<Guarded>,
    dir: TempDir,
}

/// One line of the registry's access log.
#[derive(Debug, Clone)]
pub struct Access {
    pub method: String,
    pub path: String,
    pub status: u16,
}

impl Registry {
    pub fn start(auth: Auth) -> Registry {
        Registry::start_on(auth, "127.0.0.1")
    }

    /// Starts listening on `ip` (an address of this host) instead of loopback.
    pub fn start_on(auth: Auth, ip: &str) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("hull-registry-")
            .tempdir()
            .expect("temp dir");
        let (auth_section, token_server) = match auth {
            Auth::Anonymous => (String::new(), None),
            Auth::Basic => (basic_auth_section(dir.path()), None),
            Auth::Token => {
                let (section, server) = token_auth_section(dir.path());
                (section, Some(server))
            }
        };
        for _attempt in 0..5 {
            let port = free_port();
            let host = format!("{ip}:{port}");
            let config = dir.path().join("config.yml");
            fs::write(&config, config_yaml(dir.path(), &host, &auth_section)).expect("write config");
            let mut cmd = Command::new(REGISTRY_BIN);
            cmd.arg("serve").arg(&config).stdin(Stdio::null());
            cmd.stdout(log_file(dir.path(), "access.log"));
            cmd.stderr(log_file(dir.path(), "registry.log"));
            let mut registry = Guarded::spawn("docker-registry", cmd);
            let log = dir.path().join("registry.log");
            let listening = format!("listening on {host}");
            let up = wait_for("docker-registry to answer /v2/", Duration::from_secs(20), || {
                if registry.exited() {
                    return Some(false);
                }
                // Its own log line, so a server that took the port meanwhile is not mistaken for it.
                let ours = fs::read_to_string(&log).is_ok_and(|l| l.contains(&listening));
                (ours && http_status(&host, "/v2/").is_some()).then_some(true)
            });
            if up {
                return Registry {
                    host,
                    auth,
                    registry,
                    _token_server: token_server,
                    dir,
                };
            }
            // Lost the port to someone else between probing and binding: try another.
        }
        let log = fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not start:\n{log}");
    }

    /// `127.0.0.1:PORT/REPO_AND_TAG`
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{}", self.host, repo_and_tag)
    }

    /// Pushes the image tagged `tag` in the OCI layout `layout` (every platform of an
    /// index) as `repo_and_tag`, keeping its manifests as they are.
    pub fn push(&self, layout: &Path, tag: &str, repo_and_tag: &str) {
        self.skopeo_push(layout, tag, repo_and_tag, &[]);
    }

    /// Pushes converting the manifest to Docker's v2 schema 2.
    pub fn push_docker_v2(&self, layout: &Path, tag: &str, repo_and_tag: &str) {
        self.skopeo_push(layout, tag, repo_and_tag, &["--format", "v2s2"]);
    }

    fn skopeo_push(&self, layout: &Path, tag: &str, repo_and_tag: &str, extra: &[&str]) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
            .args(extra);
        if self.auth != Auth::Anonymous {
            cmd.arg("--dest-creds").arg(format!("{USER}:{PASSWORD}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()));
        cmd.arg(format!("docker://{}", self.reference(repo_and_tag)));
        run_ok(cmd);
    }

    /// Requests served so far, from the access log.
    pub fn accesses(&mut self) -> Vec<Access> {
        self.registry.assert_running(&self.dir.path().join("registry.log"));
        let text = fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines().filter_map(parse_access).collect()
    }

    /// Successful GETs of one blob, in any repository.
    pub fn blob_downloads(&mut self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        self.accesses()
            .iter()
            .filter(|a| a.method == "GET" && a.status == 200 && a.path.ends_with(&suffix))
            .count()
    }

    /// Requests the token server received: JSON objects with service, scopes, basic_auth.
    pub fn token_requests(&self) -> Vec<serde_json::Value> {
        let text = fs::read_to_string(self.dir.path().join("token/requests.log")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("token log line"))
            .collect()
    }
}

fn log_file(dir: &Path, name: &str) -> fs::File {
    fs::File::create(dir.join(name)).expect("create log file")
}

fn config_yaml(dir: &Path, host: &str, auth_section: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {host}\n  secret: hull-test-secret\n\
         {auth_section}",
        dir.join("storage").display()
    )
}

fn basic_auth_section(dir: &Path) -> String {
    let mut cmd = Command::new("htpasswd");
    cmd.args(["-Bbn", USER, PASSWORD]);
    let line = run_ok(cmd);
    let path = dir.join("htpasswd");
    fs::write(&path, line.trim_end().to_string() + "\n").expect("write htpasswd");
    format!(
        "auth:\n  htpasswd:\n    realm: hull-test\n    path: {}\n",
        path.display()
    )
}

fn token_auth_section(dir: &Path) -> (String, Guarded) {
    let state: PathBuf = dir.join("token");
    fs::create_dir(&state).expect("token state dir");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(fixture("token_server.py"))
        .arg(&state)
        .args([USER, PASSWORD, ISSUER]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(dir, "token-server.log"));
    let mut server = Guarded::spawn("token server", cmd);
    let log = dir.join("token-server.log");
    let port: u16 = wait_for("the token server's port", Duration::from_secs(30), || {
        server.assert_running(&log);
        fs::read_to_string(state.join("port")).ok()?.trim().parse().ok()
    });
    let section = format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: {SERVICE}\n    \
         issuer: {ISSUER}\n    rootcertbundle: {}\n",
        state.join("cert.pem").display()
    );
    (section, server)
}

/// `127.0.0.1 - - [date] "GET /v2/x/blobs/sha256:... HTTP/1.1" 200 123 "" "agent"`
fn parse_access(line: &str) -> Option<Access> {
    let request_start = line.find('"')? + 1;
    let rest = &line[request_start..];
    let request_end = rest.find('"')?;
    let mut request = rest[..request_end].split(' ');
    let method = request.next()?.to_string();
    let path = request.next()?.to_string();
    let status = rest[request_end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Access { method, path, status })
}
