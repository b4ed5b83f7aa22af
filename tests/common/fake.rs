//! A registry serving crafted bytes (`tests/fixtures/fake_registry.py`), for the cases
//! docker-registry refuses to store: corrupt blobs, odd manifests, redirects.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tempfile::TempDir;

use super::fixtures::{sha256, Image};
use super::process::{fixture, wait_for, Guarded, PYTHON};

pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// What the fake registry serves, assembled by the test.
#[derive(Default)]
pub struct Spec {
    manifests: Map<String, Value>,
    blobs: Map<String, Value>,
    files: Vec<Vec<u8>>,
    pub basic_auth: Option<(String, String)>,
    pub redirect_blobs: bool,
    /// Requests answered with a status or a dropped connection (see the fixture).
    pub faults: Vec<Value>,
}

impl Spec {
    /// Serves `body` as `repo:reference` (a tag or a digest) with that Content-Type.
    pub fn manifest(&mut self, repo: &str, reference: &str, content_type: &str, body: &[u8]) {
        let file = self.file(body);
        self.manifests.insert(
            format!("{repo}:{reference}"),
            json!({ "file": file, "content_type": content_type }),
        );
    }

    /// Serves `body` under the tag and under its true digest.
    pub fn tagged_manifest(&mut self, repo: &str, tag: &str, content_type: &str, body: &[u8]) {
        self.manifest(repo, tag, content_type, body);
        self.manifest(repo, &sha256(body), content_type, body);
    }

    /// Serves `body` as the blob `digest` of `repo`, whatever its real digest.
    pub fn blob(&mut self, repo: &str, digest: &str, body: &[u8]) {
        let file = self.file(body);
        self.blobs.insert(format!("{repo}@{digest}"), json!({ "file": file }));
    }

    /// Like `blob`, but the first GET sends `after` bytes, stalls for `seconds`, and
    /// drops the connection.
    pub fn stalling_blob(&mut self, repo: &str, digest: &str, body: &[u8], after: usize, seconds: u64) {
        let file = self.file(body);
        self.blobs.insert(
            format!("{repo}@{digest}"),
            json!({ "file": file, "stall_once_after": after, "stall_seconds": seconds }),
        );
    }

    /// Serves every manifest and blob of a built single-manifest image under `repo:tag`,
    /// except the blobs in `skip` (for the test to serve its own versions).
    pub fn image(&mut self, repo: &str, tag: &str, image: &Image, skip: &[&str]) {
        let m = &image.manifests[0];
        self.tagged_manifest(repo, tag, MT_MANIFEST, &image.blob(&m.digest));
        for digest in Image::blobs_of(m) {
            if !skip.contains(&digest.as_str()) {
                self.blob(repo, &digest, &image.blob(&digest));
            }
        }
    }

    fn file(&mut self, body: &[u8]) -> String {
        self.files.push(body.to_vec());
        format!("{}", self.files.len() - 1)
    }
}

/// A request the fake registry received.
#[derive(Debug, Clone)]
pub struct Request {
    /// "registry" or "redirect" (the second listener, on 127.0.0.2).
    pub listener: String,
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
}

pub struct FakeRegistry {
    /// `127.0.0.1:PORT`
    pub host: String,
    /// `127.0.0.2:PORT` when blobs are redirected.
    pub redirect_host: Option<String>,
    // Dropped in this order: the server, then its files.
    server: Guarded,
    dir: TempDir,
}

impl FakeRegistry {
    pub fn start(spec: Spec) -> FakeRegistry {
        let dir = tempfile::Builder::new()
            .prefix("hull-fake-registry-")
            .tempdir()
            .expect("temp dir");
        let resolve = |entries: Map<String, Value>| -> Map<String, Value> {
            entries
                .into_iter()
                .map(|(k, mut v)| {
                    let index: usize = v["file"].as_str().unwrap().parse().unwrap();
                    let path = dir.path().join(format!("body-{index}"));
                    fs::write(&path, &spec.files[index]).expect("write body");
                    v["file"] = json!(path);
                    (k, v)
                })
                .collect()
        };
        let doc = json!({
            "manifests": resolve(spec.manifests.clone()),
            "blobs": resolve(spec.blobs.clone()),
            "basic_auth": spec.basic_auth.as_ref().map(|(u, p)| format!("{u}:{p}")),
            "redirect_blobs": spec.redirect_blobs,
            "faults": spec.faults,
        });
        let spec_path = dir.path().join("spec.json");
        fs::write(&spec_path, serde_json::to_vec_pretty(&doc).unwrap()).expect("write spec");
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(fixture("fake_registry.py")).arg(&spec_path).arg(dir.path());
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        cmd.stderr(fs::File::create(&log).expect("server log"));
        let mut server = Guarded::spawn("fake registry", cmd);
        let ports: Value = wait_for("the fake registry's ports", Duration::from_secs(20), || {
            server.assert_running(&log);
            serde_json::from_str(&fs::read_to_string(dir.path().join("ports.json")).ok()?).ok()
        });
        let host = format!("127.0.0.1:{}", ports["registry"]);
        let redirect_host = ports.get("redirect").map(|p| format!("127.0.0.2:{p}"));
        FakeRegistry {
            host,
            redirect_host,
            server,
            dir,
        }
    }

    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{}", self.host, repo_and_tag)
    }

    pub fn requests(&mut self) -> Vec<Request> {
        self.server.assert_running(&self.dir.path().join("server.log"));
        let text = fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("request log line");
                Request {
                    listener: v["listener"].as_str().unwrap().to_string(),
                    method: v["method"].as_str().unwrap().to_string(),
                    path: v["path"].as_str().unwrap().to_string(),
                    authorization: v["authorization"].as_str().map(str::to_string),
                }
            })
            .collect()
    }
}

/// The first `times` requests of `method` whose path contains `path` get `status`.
pub fn status_fault(method: &str, path: &str, status: u16, times: u32) -> Value {
    json!({ "method": method, "path_contains": path, "status": status, "times": times })
}

/// The first `times` such requests have their connection dropped mid-body.
pub fn drop_fault(method: &str, path: &str, times: u32) -> Value {
    json!({ "method": method, "path_contains": path, "drop": true, "times": times })
}

pub fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}
