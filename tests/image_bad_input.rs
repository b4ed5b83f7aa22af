//! Hostile registries and host faults during pulls (SECURITY.md, "Registry and
//! manifests" and "Host faults"): each case one named test. Every failure is exit 125
//! with one `hull: ` line, and the store is left as it was: no blob under a final name
//! that does not match it, no index entry.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use common::fake::{descriptor, FakeRegistry, Spec, MT_INDEX, MT_MANIFEST};
use common::fixtures::{hex, sha256, Image, Kind, TAG};
use common::hull::{check_failure, output_with_file_size_limit, Hull};
use common::process::wait_for;
use common::registry::{Auth, Registry};
use common::store;

const REPO: &str = "bad/busybox";

/// The busybox image served by a fake registry, its first layer replaced by `layer`.
fn serve_with_layer(hull: &Hull, layer: impl FnOnce(Vec<u8>) -> Vec<u8>) -> (FakeRegistry, Image) {
    let image = Image::build(&hull.work(), Kind::Busybox);
    let first = image.manifests[0].layers[0].clone();
    let mut spec = Spec::default();
    spec.image(REPO, "latest", &image, &[&first]);
    spec.blob(REPO, &first, &layer(image.blob(&first)));
    (FakeRegistry::start(spec), image)
}

/// Pull fails; nothing is tagged; every stored blob matches its name.
fn assert_pull_rejected(hull: &Hull, reference: &str) -> String {
    let err = hull.fails(&["pull", reference]);
    assert!(
        store::ref_names(&hull.root).is_empty(),
        "a failed pull tagged something"
    );
    store::assert_consistent(&hull.root);
    assert_eq!(
        store::temp_files(&hull.root),
        Vec::<String>::new(),
        "a failed pull left temp files"
    );
    err
}

fn assert_names_layer(err: &str, digest: &str) {
    assert!(
        err.contains(&hex(digest)[..12]),
        "the error must name layer {digest}: {err}"
    );
}

#[test]
fn blob_with_one_bit_flipped_is_never_stored() {
    let hull = Hull::new();
    let (fake, image) = serve_with_layer(&hull, |mut b| {
        let middle = b.len() / 2;
        b[middle] ^= 0x10;
        b
    });
    let err = assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
    let layer = &image.manifests[0].layers[0];
    assert_names_layer(&err, layer);
    assert!(!store::has_blob(&hull.root, layer));
}

#[test]
fn blob_longer_than_its_descriptor_is_never_stored() {
    let hull = Hull::new();
    let (fake, image) = serve_with_layer(&hull, |mut b| {
        b.extend_from_slice(&[0x55; 4096]);
        b
    });
    let err = assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
    let layer = &image.manifests[0].layers[0];
    assert_names_layer(&err, layer);
    assert!(!store::has_blob(&hull.root, layer));
}

#[test]
fn blob_shorter_than_its_descriptor_is_never_stored() {
    let hull = Hull::new();
    let (fake, image) = serve_with_layer(&hull, |mut b| {
        b.truncate(b.len() - 4096);
        b
    });
    let err = assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
    let layer = &image.manifests[0].layers[0];
    assert_names_layer(&err, layer);
    assert!(!store::has_blob(&hull.root, layer));
}

#[test]
fn config_with_one_bit_flipped_is_never_stored() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let config = image.manifests[0].config.clone();
    let mut spec = Spec::default();
    spec.image(REPO, "latest", &image, &[&config]);
    let mut bytes = image.blob(&config);
    bytes[10] ^= 0x01;
    spec.blob(REPO, &config, &bytes);
    let fake = FakeRegistry::start(spec);
    let err = assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
    assert_names_layer(&err, &config);
    assert!(!store::has_blob(&hull.root, &config));
}

/// A reference with a malformed digest is refused before any request is made.
fn assert_reference_refused(bad_digest: &str) {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let mut spec = Spec::default();
    spec.image(REPO, "latest", &image, &[]);
    let mut fake = FakeRegistry::start(spec);
    let reference = format!("{}/{REPO}@{bad_digest}", fake.host);
    hull.fails(&["pull", &reference]);
    assert!(
        fake.requests().is_empty(),
        "hull sent requests for {reference}: {:?}",
        fake.requests()
    );
    assert!(store::ref_names(&hull.root).is_empty());
    assert!(store::blob_names(&hull.root).is_empty());
    assert!(!hull.root.join("x").exists() && !hull.root.parent().unwrap().join("x").exists());
}

#[test]
fn reference_digest_with_path_traversal_is_refused_before_any_request() {
    assert_reference_refused("sha256:../../x");
}

#[test]
fn reference_digest_of_the_wrong_length_is_refused_before_any_request() {
    assert_reference_refused("sha256:0123456789abcdef");
}

#[test]
fn reference_digest_with_an_unknown_algorithm_is_refused_before_any_request() {
    assert_reference_refused("md5:d41d8cd98f00b204e9800998ecf8427e");
}

/// The busybox image with the digest of its config or first layer replaced.
fn assert_manifest_digest_refused(field: &str, bad_digest: &str) {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let m = &image.manifests[0];
    let mut doc: serde_json::Value = serde_json::from_slice(&image.blob(&m.digest)).unwrap();
    match field {
        "config" => doc["config"]["digest"] = json!(bad_digest),
        _ => doc["layers"][0]["digest"] = json!(bad_digest),
    }
    let body = serde_json::to_vec(&doc).unwrap();
    let mut spec = Spec::default();
    spec.tagged_manifest(REPO, "latest", MT_MANIFEST, &body);
    for blob in Image::blobs_of(m) {
        spec.blob(REPO, &blob, &image.blob(&blob));
    }
    let mut fake = FakeRegistry::start(spec);
    assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.path.contains(bad_digest) && !r.path.contains("..")),
        "hull requested a URL built from {bad_digest}: {requests:?}"
    );
    let parent = hull.root.parent().unwrap();
    assert!(
        store::tree(parent).iter().all(|p| !p.ends_with("/x") && p != "x"),
        "a file named after the digest appeared: {:?}",
        store::tree(parent)
    );
}

#[test]
fn manifest_layer_digest_with_path_traversal_is_refused() {
    assert_manifest_digest_refused("layer", "sha256:../../../../x");
}

#[test]
fn manifest_layer_digest_of_the_wrong_length_is_refused() {
    assert_manifest_digest_refused("layer", "sha256:0123456789abcdef0123456789abcdef");
}

#[test]
fn manifest_config_digest_with_an_unknown_algorithm_is_refused() {
    assert_manifest_digest_refused("config", "md5:d41d8cd98f00b204e9800998ecf8427e");
}

/// Serves `body` as the manifest `REPO:latest` with that Content-Type; pull must fail.
fn assert_document_refused(content_type: &str, body: &[u8]) -> String {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let mut spec = Spec::default();
    spec.tagged_manifest(REPO, "latest", content_type, body);
    for blob in Image::blobs_of(&image.manifests[0]) {
        spec.blob(REPO, &blob, &image.blob(&blob));
    }
    let fake = FakeRegistry::start(spec);
    let err = assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
    assert!(
        store::blob_names(&hull.root).is_empty(),
        "blobs of a refused manifest were stored"
    );
    err
}

fn busybox_manifest() -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let image = Image::build(dir.path(), Kind::Busybox);
    serde_json::from_slice(&image.blob(&image.manifests[0].digest)).unwrap()
}

#[test]
fn manifest_larger_than_4_mib_is_refused() {
    let mut doc = busybox_manifest();
    doc["annotations"] = json!({ "padding": "p".repeat(4 * 1024 * 1024 + 1) });
    let err = assert_document_refused(MT_MANIFEST, &serde_json::to_vec(&doc).unwrap());
    assert!(err.contains(REPO), "the error must name the image: {err}");
}

#[test]
fn document_that_is_both_manifest_and_index_is_refused() {
    let mut doc = busybox_manifest();
    doc.as_object_mut().unwrap().remove("mediaType");
    doc["manifests"] = json!([descriptor(MT_MANIFEST, &sha256(b"other"), 5)]);
    assert_document_refused(MT_MANIFEST, &serde_json::to_vec(&doc).unwrap());
}

#[test]
fn index_served_as_a_manifest_is_refused() {
    // A well-formed index over the real amd64 manifest, but the registry says it is a
    // manifest: the Content-Type and the document's own mediaType disagree.
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let m = &image.manifests[0];
    let mut entry = descriptor(MT_MANIFEST, &m.digest, image.blob(&m.digest).len());
    entry["platform"] = json!({ "architecture": "amd64", "os": "linux" });
    let index = json!({ "schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [entry] });
    let mut spec = Spec::default();
    spec.image(REPO, "single", &image, &[]);
    spec.manifest(REPO, "latest", MT_MANIFEST, &serde_json::to_vec(&index).unwrap());
    let fake = FakeRegistry::start(spec);
    assert_pull_rejected(&hull, &fake.reference(&format!("{REPO}:latest")));
}

#[test]
fn unknown_manifest_media_type_is_unsupported() {
    let mut doc = busybox_manifest();
    let odd = "application/vnd.example.unknown.manifest.v1+json";
    doc["mediaType"] = json!(odd);
    let err = assert_document_refused(odd, &serde_json::to_vec(&doc).unwrap());
    assert!(
        err.to_lowercase().contains("unsupported"),
        "want an `unsupported` error: {err}"
    );
    assert!(err.contains(odd), "the error must name the media type: {err}");
}

#[test]
fn unknown_layer_media_type_is_unsupported() {
    let mut doc = busybox_manifest();
    doc["layers"][0]["mediaType"] = json!("application/vnd.example.layer.v1.tar+lz4");
    let err = assert_document_refused(MT_MANIFEST, &serde_json::to_vec(&doc).unwrap());
    assert!(
        err.to_lowercase().contains("unsupported"),
        "want an `unsupported` error: {err}"
    );
}

#[test]
fn schema1_manifest_is_unsupported() {
    let doc = json!({
        "schemaVersion": 1,
        "name": REPO,
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{ "blobSum": sha256(b"layer") }],
        "history": [{ "v1Compatibility": "{\"id\":\"0\"}" }],
        "signatures": [],
    });
    let err = assert_document_refused(
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        &serde_json::to_vec_pretty(&doc).unwrap(),
    );
    assert!(
        err.to_lowercase().contains("unsupported"),
        "want an `unsupported` error: {err}"
    );
}

#[test]
fn config_with_an_unknown_media_type_is_unsupported() {
    let mut doc = busybox_manifest();
    doc["config"]["mediaType"] = json!("application/vnd.example.config.v1+json");
    let err = assert_document_refused(MT_MANIFEST, &serde_json::to_vec(&doc).unwrap());
    assert!(
        err.to_lowercase().contains("unsupported"),
        "want an `unsupported` error: {err}"
    );
}

#[test]
fn index_without_the_host_platform_lists_the_platforms_present() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Foreign);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "foreign:latest");
    let err = assert_pull_rejected(&hull, &registry.reference("foreign:latest"));
    assert!(err.contains("linux/ppc64le"), "platforms present must be listed: {err}");
    assert!(err.contains("linux/s390x"), "platforms present must be listed: {err}");
    assert!(
        store::blob_names(&hull.root).is_empty(),
        "no blob of another platform is stored"
    );
}

#[test]
fn index_without_the_requested_platform_lists_the_platforms_present() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::MultiArch);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "multi:latest");
    let reference = registry.reference("multi:latest");
    let args = ["pull", "--platform", "linux/riscv64", reference.as_str()];
    let err = check_failure(&args, hull.run(&args));
    assert!(err.contains("linux/amd64") && err.contains("linux/arm64"), "{err}");
    assert!(store::ref_names(&hull.root).is_empty());
}

#[test]
fn kill_9_during_a_pull_leaves_no_partial_blob_and_a_retry_succeeds() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let m = &image.manifests[0];
    let layer = m.layers[0].clone();
    let mut spec = Spec::default();
    spec.image(REPO, "latest", &image, &[&layer]);
    spec.stalling_blob(REPO, &layer, &image.blob(&layer), 256 * 1024, 60);
    let mut fake = FakeRegistry::start(spec);
    let reference = fake.reference(&format!("{REPO}:latest"));

    let mut child = hull
        .command(&["pull", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hull pull");
    let blob_path = format!("/blobs/{layer}");
    wait_for("hull to start downloading the layer", Duration::from_secs(30), || {
        let started = fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(&blob_path));
        started.then_some(())
    });
    // Give it time to write the bytes it was sent.
    std::thread::sleep(Duration::from_millis(500));
    child.kill().expect("SIGKILL hull");
    child.wait().unwrap();

    store::assert_consistent(&hull.root);
    assert!(
        !store::has_blob(&hull.root, &layer),
        "a partial layer sits under its final name"
    );
    assert!(!store::ref_names(&hull.root).contains(&reference));

    hull.ok(&["pull", &reference]);
    store::assert_consistent(&hull.root);
    assert!(store::has_blob(&hull.root, &layer));
    assert_eq!(hull.inspect(&reference)["Id"], m.config.as_str());

    // What the killed pull left in tmp/ is garbage once nobody holds it.
    hull.ok(&["image", "prune", "-f"]);
    assert_eq!(
        store::temp_files(&hull.root),
        Vec::<String>::new(),
        "prune kept a dead pull's temp file"
    );
    assert_eq!(hull.inspect(&reference)["Id"], m.config.as_str());
}

#[test]
fn full_disk_during_a_pull_fails_cleanly_and_a_retry_succeeds() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "busybox:latest");
    let reference = registry.reference("busybox:latest");
    let m = &image.manifests[0];
    let limit = 128 * 1024;
    assert!(
        m.layer_sizes[0] > 4 * limit,
        "the first layer must not fit under the limit"
    );

    let args = ["pull", reference.as_str()];
    let err = check_failure(&args, hull.run_with_file_size_limit(&args, limit));
    assert!(!err.contains("panicked"), "{err}");
    store::assert_consistent(&hull.root);
    assert_eq!(
        store::temp_files(&hull.root),
        Vec::<String>::new(),
        "a failed pull left temp files"
    );
    assert!(!store::has_blob(&hull.root, &m.layers[0]));
    assert!(store::ref_names(&hull.root).is_empty());

    hull.ok(&["pull", &reference]);
    store::assert_consistent(&hull.root);
    assert_eq!(hull.inspect(&reference)["Id"], m.config.as_str());
}

/// A store that pulled the busybox image from a registry (kept running) at `reference`.
fn pulled_busybox() -> (Hull, Registry, String) {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "busybox:latest");
    let reference = registry.reference("busybox:latest");
    hull.ok(&["pull", "-q", &reference]);
    (hull, registry, reference)
}

/// SECURITY.md, host faults: the disk fills while an image is flattened into its root
/// disk. One line naming the disk, no disk under its final name, no temporary file,
/// no container; the same create succeeds once there is room.
#[test]
fn full_disk_during_a_flatten_fails_cleanly_and_a_retry_succeeds() {
    let (hull, _registry, reference) = pulled_busybox();

    let args = ["create", reference.as_str(), "true"];
    let limit = 64 * 1024;
    let err = check_failure(
        &args,
        output_with_file_size_limit(hull.create_command(&args[1..]), limit),
    );
    assert!(err.contains(".erofs"), "the error names the root disk: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        store::rootfs_files(&hull.root),
        Vec::<String>::new(),
        "a partial disk was left"
    );
    assert_eq!(store::container_dirs(&hull.root), Vec::<String>::new());
    store::assert_consistent(&hull.root);

    hull.create_container(&args[1..]);
    let disks = store::rootfs_files(&hull.root);
    assert!(disks.len() == 1 && disks[0].ends_with(".erofs"), "{disks:?}");
    assert_eq!(store::container_dirs(&hull.root).len(), 1);
}

#[test]
fn redirect_to_another_host_does_not_carry_credentials() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let mut spec = Spec::default();
    spec.image(REPO, "latest", &image, &[]);
    spec.basic_auth = Some(("redirect-user".into(), "redirect-secret".into()));
    spec.redirect_blobs = true;
    let mut fake = FakeRegistry::start(spec);
    hull.login(&fake.host, "redirect-user", "redirect-secret");
    let reference = fake.reference(&format!("{REPO}:latest"));
    hull.ok(&["pull", &reference]);
    store::assert_consistent(&hull.root);

    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.listener == "registry" && r.authorization.is_some()),
        "hull never sent its credentials to the registry: {requests:?}"
    );
    let redirected: Vec<_> = requests.iter().filter(|r| r.listener == "redirect").collect();
    assert!(
        !redirected.is_empty(),
        "no blob was fetched from the redirect target: {requests:?}"
    );
    for r in redirected {
        assert_eq!(
            r.authorization, None,
            "credentials went to {:?}: {r:?}",
            fake.redirect_host
        );
    }
}

#[test]
fn store_directory_writable_by_others_is_refused() {
    let hull = Hull::new();
    std::fs::create_dir(&hull.root).unwrap();
    std::fs::set_permissions(&hull.root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = hull.fails(&["images"]);
    assert!(
        err.contains(hull.root.to_str().unwrap()),
        "the error must name the store: {err}"
    );
    assert!(store::tree(&hull.root).is_empty(), "hull wrote into a store it refused");
}

#[test]
fn store_directory_owned_by_another_user_is_refused() {
    let hull = Hull::new();
    // SAFETY: geteuid has no arguments and cannot fail.
    let root = if unsafe { libc::geteuid() } == 0 {
        std::fs::create_dir(&hull.root).unwrap();
        std::fs::set_permissions(&hull.root, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&hull.root, Some(65534), Some(65534)).unwrap();
        hull.root.clone()
    } else {
        // Unprivileged: a directory root owns stands for another user's.
        std::path::PathBuf::from("/var/cache")
    };
    let args = ["images"];
    let out = hull.command(&args).env("HULL_ROOT", &root).output().unwrap();
    let err = check_failure(&args, out);
    assert!(
        err.contains(root.to_str().unwrap()),
        "the error must name the store: {err}"
    );
}

#[test]
fn invalid_references_are_refused_without_side_effects() {
    let hull = Hull::new();
    let long_name = format!("127.0.0.1:5000/{}:latest", "a".repeat(300));
    let bad = [
        "",
        "library/UPPER:latest",
        "127.0.0.1:5000/a/../b:latest",
        "127.0.0.1:5000//double:latest",
        "busybox:bad tag",
        "busybox:-leading-dash",
        long_name.as_str(),
        "busybox@",
        "127.0.0.1:5000/busybox:latest@sha256:../../../etc/passwd",
    ];
    for reference in bad {
        let args = ["pull", reference];
        let err = check_failure(&args, hull.run(&args));
        assert!(
            err.contains("reference") || err.contains("invalid"),
            "{reference:?}: {err}"
        );
    }
    assert!(store::ref_names(&hull.root).is_empty());
    assert!(store::blob_names(&hull.root).is_empty());
}

#[test]
fn tag_to_an_invalid_reference_fails_and_changes_nothing() {
    let (hull, _registry, reference) = pulled_busybox();
    let before = std::fs::read(hull.root.join("index.json")).unwrap();
    for target in ["Bad/Name:1", "x/../y:1", "ok:bad tag"] {
        let args = ["tag", reference.as_str(), target];
        check_failure(&args, hull.run(&args));
    }
    assert_eq!(std::fs::read(hull.root.join("index.json")).unwrap(), before);
}

#[test]
fn prune_during_a_pull_keeps_the_blobs_the_pull_has_written() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let m = &image.manifests[0];
    let layer = m.layers[0].clone();
    let mut spec = Spec::default();
    spec.image(REPO, "latest", &image, &[&layer]);
    // The first download of the big layer stalls 4 s, then breaks; a retry gets it whole.
    spec.stalling_blob(REPO, &layer, &image.blob(&layer), 64 * 1024, 4);
    let mut fake = FakeRegistry::start(spec);
    let reference = fake.reference(&format!("{REPO}:latest"));

    let child = hull
        .command(&["pull", "-q", &reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hull pull");
    let blob_path = format!("/blobs/{layer}");
    wait_for("hull to start downloading the layer", Duration::from_secs(30), || {
        let started = fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(&blob_path));
        started.then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    hull.ok(&["image", "prune", "-a", "-f"]);

    let out = child.wait_with_output().expect("wait for hull pull");
    assert!(
        out.status.success(),
        "the pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    store::assert_consistent(&hull.root);
    for blob in Image::blobs_of(m) {
        assert!(
            store::has_blob(&hull.root, &blob),
            "prune removed {blob} from under a running pull"
        );
    }
    assert_eq!(hull.inspect(&reference)["Id"], m.config.as_str());
}
