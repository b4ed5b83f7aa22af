//! The test harness itself: registries start, accept pushes of the test images, and
//! enforce their auth; skopeo (a peer implementation) reads back what was pushed.

mod common;

use std::process::Command;

use common::fake::{FakeRegistry, Spec, MT_MANIFEST};
use common::fixtures::{sha256, Image, Kind, TAG};
use common::process::http_status;
use common::registry::{Auth, Registry, PASSWORD, USER};

fn skopeo_raw(reference: &str, creds: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.arg("--creds").arg(creds);
    }
    cmd.arg(format!("docker://{reference}"));
    cmd.output().expect("run skopeo")
}

#[test]
fn registry_anonymous_serves_pushed_multiarch_index() {
    let work = tempfile::tempdir().unwrap();
    let image = Image::build(work.path(), Kind::MultiArch);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "multi:1");
    let out = skopeo_raw(&registry.reference("multi:1"), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&out.stdout), image.digest, "the index is served byte for byte");
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);
}

#[test]
fn registry_basic_auth_refuses_anonymous_and_accepts_the_user() {
    let work = tempfile::tempdir().unwrap();
    let image = Image::build(work.path(), Kind::Busybox);
    let registry = Registry::start(Auth::Basic);
    assert_eq!(http_status(&registry.host, "/v2/"), Some(401));
    registry.push(&image.layout, TAG, "busybox:latest");
    let reference = registry.reference("busybox:latest");
    assert!(!skopeo_raw(&reference, None).status.success());
    let out = skopeo_raw(&reference, Some(&format!("{USER}:{PASSWORD}")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(sha256(&out.stdout), image.manifests[0].digest);
}

#[test]
fn registry_token_auth_issues_tokens_only_to_the_user() {
    let work = tempfile::tempdir().unwrap();
    let image = Image::build(work.path(), Kind::Busybox);
    let registry = Registry::start(Auth::Token);
    assert_eq!(http_status(&registry.host, "/v2/"), Some(401));
    registry.push(&image.layout, TAG, "busybox:latest");
    let reference = registry.reference("busybox:latest");
    assert!(!skopeo_raw(&reference, None).status.success());
    let out = skopeo_raw(&reference, Some(&format!("{USER}:{PASSWORD}")));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = registry.token_requests();
    assert!(requests.iter().any(|r| r["basic_auth"] == true
        && r["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "repository:busybox:pull")));
}

#[test]
fn registry_access_log_counts_blob_downloads() {
    let work = tempfile::tempdir().unwrap();
    let image = Image::build(work.path(), Kind::Busybox);
    let mut registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "busybox:latest");
    let layer = image.manifests[0].layers[0].clone();
    assert_eq!(registry.blob_downloads(&layer), 0);
    let dest = work.path().join("copy");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}", registry.reference("busybox:latest")))
        .arg(format!("oci:{}:x", dest.display()));
    common::process::run_ok(cmd);
    assert_eq!(registry.blob_downloads(&layer), 1);
}

#[test]
fn fake_registry_serves_crafted_bytes_and_logs_requests() {
    let mut spec = Spec::default();
    spec.manifest("odd", "v1", MT_MANIFEST, b"not json at all");
    spec.blob("odd", "sha256:1234", b"whatever");
    let mut fake = FakeRegistry::start(spec);
    assert_eq!(http_status(&fake.host, "/v2/odd/manifests/v1"), Some(200));
    assert_eq!(http_status(&fake.host, "/v2/odd/blobs/sha256:1234"), Some(200));
    assert_eq!(http_status(&fake.host, "/v2/odd/blobs/sha256:5678"), Some(404));
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v2/odd/manifests/v1",
            "/v2/odd/blobs/sha256:1234",
            "/v2/odd/blobs/sha256:5678"
        ]
    );
}

fn skopeo_copy_from(reference: &str, creds: Option<&str>, dest: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--src-tls-verify=false"]);
    if let Some(creds) = creds {
        cmd.arg("--src-creds").arg(creds);
    }
    cmd.arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:x", dest.display()));
    cmd.output().expect("run skopeo")
}

#[test]
fn fake_registry_serves_a_whole_image_that_skopeo_copies() {
    let work = tempfile::tempdir().unwrap();
    let image = Image::build(work.path(), Kind::Busybox);
    let mut spec = Spec::default();
    spec.image("plain/busybox", "latest", &image, &[]);
    let fake = FakeRegistry::start(spec);
    let out = skopeo_copy_from(&fake.reference("plain/busybox:latest"), None, &work.path().join("copy"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn fake_registry_redirects_blobs_to_a_second_host_behind_basic_auth() {
    let work = tempfile::tempdir().unwrap();
    let image = Image::build(work.path(), Kind::Busybox);
    let mut spec = Spec::default();
    spec.image("r/busybox", "latest", &image, &[]);
    spec.basic_auth = Some(("u".into(), "p".into()));
    spec.redirect_blobs = true;
    let mut fake = FakeRegistry::start(spec);
    let reference = fake.reference("r/busybox:latest");
    assert!(!skopeo_copy_from(&reference, None, &work.path().join("anon"))
        .status
        .success());
    let out = skopeo_copy_from(&reference, Some("u:p"), &work.path().join("copy"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = fake.requests();
    let redirected = requests
        .iter()
        .filter(|r| r.listener == "redirect" && r.method == "GET")
        .count();
    assert_eq!(redirected, 1 + image.manifests[0].layers.len(), "{requests:?}");
}

#[test]
fn fake_registry_stalls_a_blob_once() {
    let body = vec![7u8; 100_000];
    let digest = sha256(&body);
    let mut spec = Spec::default();
    spec.stalling_blob("s", &digest, &body, 1000, 60);
    let fake = FakeRegistry::start(spec);
    let path = format!("/v2/s/blobs/{digest}");
    let url = format!("http://{}{path}", fake.host);
    let fetch = |limit: &str| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{size_download}", "-m", limit, &url])
            .output()
            .unwrap()
    };
    let first = fetch("2");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "1000",
        "the first GET stalls after 1000 bytes"
    );
    let second = fetch("10");
    assert_eq!(String::from_utf8_lossy(&second.stdout), "100000");
}
