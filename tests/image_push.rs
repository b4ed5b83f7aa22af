//! `hull push`, `hull login` and `hull logout` against a real registry (Debian's
//! docker-registry) and, for injected faults, the fake registry fixture.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

use common::fake::{drop_fault, status_fault, FakeRegistry, Spec};
use common::fixtures::{Image, Kind, TAG};
use common::hull::{check_failure, lines, Hull};
use common::process::run_ok;
use common::registry::{Auth, Registry, PASSWORD, USER};

/// A hull with the busybox test image pulled from a registry of its own.
fn pulled() -> (Hull, Registry, Image, String) {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let source = Registry::start(Auth::Anonymous);
    source.push(&image.layout, TAG, "src/busybox:latest");
    let reference = source.reference("src/busybox:latest");
    hull.ok(&["pull", "-q", &reference]);
    (hull, source, image, reference)
}

/// An image made by `hull import` of a small tree, tagged `reference`.
fn imported(hull: &Hull, reference: &str) {
    let tree = hull.work().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hello"), "hello from an imported layer\n").unwrap();
    let tar = hull.work().join("tree.tar");
    let mut cmd = Command::new("tar");
    cmd.arg("-C").arg(&tree).arg("-cf").arg(&tar).arg(".");
    run_ok(cmd);
    hull.ok(&["import", tar.to_str().unwrap(), reference]);
}

/// The manifest digest of `reference` as a fresh store pulls it.
fn pulled_back_digest(reference: &str) -> String {
    let fresh = Hull::new();
    let out = fresh.ok(&["pull", reference]);
    let digest = lines(&out)
        .iter()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in:\n{out}"))
        .to_string();
    digest
}

fn local_digest(hull: &Hull, reference: &str) -> String {
    let records = common::store::ref_names(&hull.root);
    assert!(records.contains(&reference.to_string()), "{reference} not stored");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(hull.root.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .unwrap()
}

fn skopeo_digest(reference: &str, creds: Option<&str>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if let Some(c) = creds {
        cmd.arg("--creds").arg(c);
    }
    cmd.arg(format!("docker://{reference}"));
    let v: serde_json::Value = serde_json::from_str(&run_ok(cmd)).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// The 12 hex digits progress lines show.
fn short(digest: &str) -> &str {
    &digest["sha256:".len()..][..12]
}

/// The push ended as Docker's does: `TAG: digest: sha256:... size: N`.
fn assert_push_output(out: &str, tag: &str, digest: &str) {
    let last = lines(out).last().copied().unwrap_or("");
    assert!(
        last.starts_with(&format!("{tag}: digest: {digest} size: ")),
        "in:\n{out}"
    );
}

#[test]
fn a_pulled_image_pushed_elsewhere_pulls_back_with_the_same_digest() {
    let (hull, _source, image, reference) = pulled();
    let target = Registry::start(Auth::Anonymous);
    let pushed = target.reference("copy/busybox:v1");
    hull.ok(&["tag", &reference, &pushed]);
    let digest = local_digest(&hull, &pushed);
    let out = hull.ok(&["push", &pushed]);
    assert_eq!(
        lines(&out)[0],
        format!("The push refers to repository [{}]", target.reference("copy/busybox"))
    );
    let layers = &image.manifests[0].layers;
    for layer in layers {
        let short = short(layer);
        assert!(out.contains(&format!("{short}: Pushed")), "{short} not pushed:\n{out}");
    }
    assert_push_output(&out, "v1", &digest);
    assert_eq!(pulled_back_digest(&pushed), digest);
    assert_eq!(skopeo_digest(&pushed, None), digest);

    let again = hull.ok(&["push", &pushed]);
    for layer in layers {
        let short = short(layer);
        assert!(
            again.contains(&format!("{short}: Layer already exists")),
            "in:\n{again}"
        );
    }
    assert!(!again.contains(": Pushed"), "a second push uploads nothing:\n{again}");
}

#[test]
fn a_push_to_another_repository_of_the_same_registry_mounts_the_layers() {
    let (hull, source, image, reference) = pulled();
    let pushed = source.reference("other/busybox:latest");
    hull.ok(&["tag", &reference, &pushed]);
    let out = hull.ok(&["push", &pushed]);
    for layer in &image.manifests[0].layers {
        let short = short(layer);
        assert!(
            out.contains(&format!("{short}: Mounted from src/busybox")),
            "in:\n{out}"
        );
    }
    assert_eq!(pulled_back_digest(&pushed), local_digest(&hull, &pushed));
}

#[test]
fn an_imported_image_pushes_its_uncompressed_layer_as_stored() {
    let hull = Hull::new();
    let target = Registry::start(Auth::Anonymous);
    let reference = target.reference("imported/tree:latest");
    imported(&hull, &reference);
    let digest = local_digest(&hull, &reference);
    let out = hull.ok(&["push", "--quiet", &reference]);
    assert_eq!(out, "", "quiet prints nothing");
    assert_eq!(pulled_back_digest(&reference), digest);
    assert_eq!(skopeo_digest(&reference, None), digest);
}

#[test]
fn pushing_an_image_the_store_lacks_names_it() {
    let hull = Hull::new();
    let err = hull.fails(&["push", "127.0.0.1:1/nothing:here"]);
    assert!(err.contains("127.0.0.1:1/nothing:here"), "{err}");
}

fn login(hull: &Hull, host: &str, password: &str) -> Output {
    hull.run(&["login", "-u", USER, "-p", password, host])
}

fn assert_no_secret(out: &Output) {
    for text in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains(PASSWORD) && !text.contains("wrong-password"),
            "a password was printed:\n{text}"
        );
    }
}

#[test]
fn login_checks_the_password_keeps_it_and_logout_removes_it() {
    let hull = Hull::new();
    let registry = Registry::start(Auth::Basic);
    let config = hull.docker_config();
    hull.write_docker_config(serde_json::json!({ "auths": {}, "HttpHeaders": { "X-Kept": "yes" } }));
    let before = fs::read(&config).unwrap();

    let wrong = login(&hull, &registry.host, "wrong-password");
    assert_no_secret(&wrong);
    let err = check_failure(
        &["login"],
        Output {
            stderr: strip_warning(&wrong.stderr),
            ..wrong.clone()
        },
    );
    assert!(err.contains(&registry.host), "{err}");
    assert_eq!(
        fs::read(&config).unwrap(),
        before,
        "a failed login leaves config.json as it was"
    );

    let mut cmd = hull.command(&["login", "-u", USER, "-p", PASSWORD, &registry.host]);
    cmd.env("HULL_LOG", "trace");
    let ok = cmd.output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_no_secret(&ok);
    assert!(String::from_utf8_lossy(&ok.stderr)
        .contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("Login Succeeded"));
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(written["HttpHeaders"]["X-Kept"], "yes", "other keys are kept");
    assert!(written["auths"][&registry.host]["auth"].is_string());
    assert_eq!(fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);

    // The kept credentials push and pull.
    let (src_hull, _src, _image, reference) = pulled();
    drop(src_hull);
    hull.ok(&["pull", "-q", &reference]);
    let private = registry.reference("private/busybox:latest");
    hull.ok(&["tag", &reference, &private]);
    let mut push = hull.command(&["push", &private]);
    push.env("HULL_LOG", "trace");
    let pushed = push.output().unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    assert_no_secret(&pushed);
    assert_eq!(
        skopeo_digest(&private, Some(&format!("{USER}:{PASSWORD}"))),
        local_digest(&hull, &private)
    );

    let out = hull.ok(&["logout", &registry.host]);
    assert_eq!(out, format!("Removing login credentials for {}\n", registry.host));
    let written: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert!(written["auths"].get(&registry.host).is_none());
    assert_eq!(written["HttpHeaders"]["X-Kept"], "yes");
    let out = hull.ok(&["logout", &registry.host]);
    assert_eq!(out, format!("Not logged in to {}\n", registry.host));

    let err = hull.fails(&["push", &private]);
    assert!(err.contains("private/busybox") && err.contains("sha256:"), "{err}");
}

fn strip_warning(stderr: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.starts_with("WARNING!"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

#[test]
fn login_with_password_stdin_gets_a_push_token() {
    let hull = Hull::new();
    let registry = Registry::start(Auth::Token);
    let mut cmd = hull.command(&["login", "-u", USER, "--password-stdin", &registry.host]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Using --password via the CLI"));

    let private = registry.reference("tokened/tree:latest");
    imported(&hull, &private);
    hull.ok(&["push", "-q", &private]);
    let scopes: Vec<String> = registry
        .token_requests()
        .iter()
        .map(|r| r["scopes"].to_string())
        .collect();
    assert!(
        scopes.iter().any(|s| s.contains("push")),
        "no push scope asked: {scopes:?}"
    );
}

/// A `docker-credential-test` on PATH keeping entries as files in `store`.
fn credential_helper(hull: &Hull) -> (std::path::PathBuf, std::path::PathBuf) {
    let bin = hull.work().join("bin");
    let store = hull.work().join("helper-store");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&store).unwrap();
    let script = format!(
        r#"#!/usr/bin/python3
import json, os, sys
store = {store:?}
action = sys.argv[1]
data = sys.stdin.read()
with open(os.path.join(store, "calls"), "a") as f:
    f.write(action + "\n")
if action == "store":
    entry = json.loads(data)
    with open(os.path.join(store, entry["ServerURL"].replace("/", "_")), "w") as f:
        json.dump(entry, f)
elif action in ("get", "erase"):
    path = os.path.join(store, data.strip().replace("/", "_"))
    if not os.path.exists(path):
        print("credentials not found in native keychain")
        sys.exit(1)
    if action == "get":
        print(open(path).read())
    else:
        os.remove(path)
"#,
        store = store.to_str().unwrap()
    );
    let helper = bin.join("docker-credential-test");
    fs::write(&helper, script).unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    (bin, store)
}

#[test]
fn a_credential_helper_keeps_what_login_stores_and_push_uses_it() {
    let hull = Hull::new();
    let registry = Registry::start(Auth::Basic);
    let (bin, store) = credential_helper(&hull);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    hull.write_docker_config(serde_json::json!({ "credsStore": "test" }));
    let before = fs::read(hull.docker_config()).unwrap();
    let with_helper = |args: &[&str]| {
        let mut cmd = hull.command(args);
        cmd.env("PATH", &path);
        let out = cmd.output().unwrap();
        assert_no_secret(&out);
        out
    };
    let out = with_helper(&["login", "-u", USER, "-p", PASSWORD, &registry.host]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        fs::read(hull.docker_config()).unwrap(),
        before,
        "the helper keeps the secret, not config.json"
    );
    let kept: serde_json::Value = serde_json::from_slice(&fs::read(store.join(&registry.host)).unwrap()).unwrap();
    assert_eq!(kept["Username"], USER);
    assert_eq!(kept["Secret"], PASSWORD);

    let private = registry.reference("helped/tree:latest");
    imported(&hull, &private);
    let out = with_helper(&["push", "-q", &private]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = with_helper(&["logout", &registry.host]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removing login credentials for {}\n", registry.host)
    );
    assert!(!store.join(&registry.host).exists());
    let calls = fs::read_to_string(store.join("calls")).unwrap();
    assert_eq!(lines(&calls), ["store", "get", "erase"]);
}

/// A fake registry with `faults`, and a hull with an imported image tagged for it.
fn faulty(faults: Vec<serde_json::Value>) -> (Hull, FakeRegistry, String) {
    let mut spec = Spec::default();
    spec.faults = faults;
    let registry = FakeRegistry::start(spec);
    let hull = Hull::new();
    let reference = registry.reference("faulty/tree:latest");
    imported(&hull, &reference);
    (hull, registry, reference)
}

#[test]
fn a_registry_answering_500_is_retried() {
    let (hull, mut registry, reference) = faulty(vec![status_fault("POST", "/blobs/uploads/", 500, 2)]);
    hull.ok(&["push", &reference]);
    let posts = registry.requests().iter().filter(|r| r.method == "POST").count();
    assert!(posts >= 4, "two failed and two good upload starts, got {posts}");
    assert_eq!(pulled_back_digest(&reference), local_digest(&hull, &reference));
}

#[test]
fn a_connection_dropped_mid_upload_is_retried_and_chunks_are_used_for_large_blobs() {
    let (hull, mut registry, reference) = faulty(vec![drop_fault("PATCH", "/blobs/uploads/", 1)]);
    let mut cmd = hull.command(&["push", &reference]);
    cmd.env("HULL_PUSH_CHUNK_BYTES", "1024");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let patches = registry.requests().iter().filter(|r| r.method == "PATCH").count();
    assert!(patches >= 3, "chunks of 1 KiB: {patches} PATCHes");
    assert_eq!(pulled_back_digest(&reference), local_digest(&hull, &reference));
}

#[test]
fn a_registry_failing_every_try_gives_one_line_and_a_later_push_succeeds() {
    let (hull, _registry, reference) = faulty(vec![status_fault("PUT", "/blobs/uploads/", 500, 6)]);
    let err = hull.fails(&["push", &reference]);
    assert!(err.contains("faulty/tree:latest"), "{err}");
    assert!(err.contains("blob sha256:") && err.contains("500"), "{err}");
    hull.ok(&["push", &reference]);
}

#[test]
fn a_registry_rejecting_auth_names_the_image_and_blob() {
    let mut spec = Spec::default();
    spec.basic_auth = Some((USER.into(), PASSWORD.into()));
    let registry = FakeRegistry::start(spec);
    let hull = Hull::new();
    let reference = registry.reference("locked/tree:latest");
    imported(&hull, &reference);
    hull.login(&registry.host, USER, "wrong-password");
    let out = hull.run(&["push", &reference]);
    assert_no_secret(&out);
    let err = check_failure(&["push"], out);
    assert!(err.contains("locked/tree:latest"), "{err}");
}
