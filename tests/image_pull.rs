//! `hull pull` against a real registry (Debian's docker-registry): auth flavours,
//! platform selection, compression, the store as skopeo sees it, concurrency.

mod common;

use std::process::Stdio;

use common::fixtures::{host_arch, Image, Kind, TAG};
use common::hull::{check_failure, lines, Hull};
use common::registry::{Auth, Registry, PASSWORD, USER};
use common::store;

/// A registry of the given auth with one image of `kind` pushed as `repo:latest`.
fn serve(kind: Kind, auth: Auth, repo: &str) -> (Hull, Registry, Image, String) {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), kind);
    let registry = Registry::start(auth);
    let reference = registry.reference(&format!("{repo}:latest"));
    registry.push(&image.layout, TAG, &format!("{repo}:latest"));
    (hull, registry, image, reference)
}

/// The pull ended as Docker's does: Digest, Status, then the reference.
fn assert_pull_output(stdout: &str, digest: &str, status: &str, reference: &str) {
    let lines = lines(stdout);
    let n = lines.len();
    assert!(n >= 3, "pull printed too little:\n{stdout}");
    assert_eq!(lines[n - 3], format!("Digest: {digest}"), "in:\n{stdout}");
    assert_eq!(
        lines[n - 2],
        format!("Status: {status} for {reference}"),
        "in:\n{stdout}"
    );
    assert_eq!(lines[n - 1], reference, "in:\n{stdout}");
}

fn assert_stored(hull: &Hull, reference: &str, image: &Image, arch: &str) {
    let m = image.manifest(arch);
    store::assert_consistent(&hull.root);
    assert_eq!(
        store::temp_files(&hull.root),
        Vec::<String>::new(),
        "a pull left temp files"
    );
    assert!(
        store::ref_names(&hull.root).contains(&reference.to_string()),
        "index.json lacks {reference}"
    );
    for blob in Image::blobs_of(m) {
        assert!(store::has_blob(&hull.root, &blob), "blob {blob} not stored");
    }
    let inspect = hull.inspect(reference);
    assert_eq!(inspect["Id"], m.config.as_str());
    assert_eq!(inspect["Architecture"], arch);
    assert_eq!(inspect["RootFS"]["Layers"], serde_json::json!(m.diff_ids));
}

#[test]
fn pull_anonymous_stores_an_image_skopeo_can_read() {
    let (hull, _registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let out = hull.ok(&["pull", &reference]);
    assert_pull_output(&out, &image.digest, "Downloaded newer image", &reference);
    assert!(
        !out.contains('\r') && !out.contains('\x1b'),
        "no progress bars without a TTY:\n{out:?}"
    );
    assert_stored(&hull, &reference, &image, "amd64");

    let m = &image.manifests[0];
    let skopeo = store::skopeo_inspect(&hull.root, &reference, &[]);
    assert_eq!(skopeo["Digest"], m.digest.as_str());
    assert_eq!(skopeo["Layers"], serde_json::json!(m.layers));
    let config = store::skopeo_inspect(&hull.root, &reference, &["--config"]);
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(m.diff_ids));
    assert!(hull.root.join("oci-layout").is_file());
}

#[test]
fn pull_twice_reports_the_image_is_up_to_date() {
    let (hull, mut registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    hull.ok(&["pull", &reference]);
    let layer = &image.manifests[0].layers[0];
    assert_eq!(registry.blob_downloads(layer), 1);
    let out = hull.ok(&["pull", &reference]);
    assert_pull_output(&out, &image.digest, "Image is up to date", &reference);
    assert_eq!(
        registry.blob_downloads(layer),
        1,
        "a second pull downloads no layer again"
    );
}

#[test]
fn pull_quiet_prints_only_the_reference() {
    let (hull, _registry, _image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let out = hull.ok(&["pull", "-q", &reference]);
    assert_eq!(out, format!("{reference}\n"));
}

#[test]
fn pull_missing_tag_fails_naming_the_reference() {
    let (hull, registry, _image, _reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let missing = format!("{}/busybox:no-such-tag", registry.host);
    let err = hull.fails(&["pull", &missing]);
    assert!(err.contains("no-such-tag"), "error must name the reference: {err}");
    assert!(store::ref_names(&hull.root).is_empty());
}

#[test]
fn pull_basic_auth_uses_the_docker_config_auth_field() {
    let (hull, registry, image, reference) = serve(Kind::Busybox, Auth::Basic, "private/busybox");
    hull.login(&registry.host, USER, PASSWORD);
    hull.ok(&["pull", &reference]);
    assert_stored(&hull, &reference, &image, "amd64");
}

#[test]
fn pull_basic_auth_uses_the_docker_config_username_and_password_fields() {
    let (hull, registry, image, reference) = serve(Kind::Busybox, Auth::Basic, "private/busybox");
    hull.write_docker_config(serde_json::json!({
        "auths": { registry.host.clone(): { "username": USER, "password": PASSWORD } }
    }));
    hull.ok(&["pull", &reference]);
    assert_stored(&hull, &reference, &image, "amd64");
}

#[test]
fn pull_basic_auth_without_credentials_fails_and_stores_nothing() {
    let (hull, _registry, _image, reference) = serve(Kind::Busybox, Auth::Basic, "private/busybox");
    let err = hull.fails(&["pull", &reference]);
    assert!(err.contains("private/busybox"), "error must name the reference: {err}");
    assert!(store::ref_names(&hull.root).is_empty());
    assert!(store::blob_names(&hull.root).is_empty());
}

#[test]
fn pull_basic_auth_with_a_wrong_password_fails_without_echoing_it() {
    let (hull, registry, _image, reference) = serve(Kind::Busybox, Auth::Basic, "private/busybox");
    let wrong = "wrong-password-1234";
    hull.login(&registry.host, USER, wrong);
    let err = hull.fails(&["pull", &reference]);
    assert!(!err.contains(wrong), "credentials must not appear in errors: {err}");
    assert!(store::ref_names(&hull.root).is_empty());
}

#[test]
fn pull_token_auth_gets_a_bearer_token_with_the_configured_credentials() {
    let (hull, registry, image, reference) = serve(Kind::Busybox, Auth::Token, "private/busybox");
    let pushes = registry.token_requests().len();
    hull.login(&registry.host, USER, PASSWORD);
    let out = hull.ok(&["pull", &reference]);
    assert!(!out.contains(PASSWORD));
    assert_stored(&hull, &reference, &image, "amd64");
    let pulls = &registry.token_requests()[pushes..];
    assert!(
        pulls.iter().any(|r| r["basic_auth"] == true
            && r["service"] == "hull-test-registry"
            && r["scopes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "repository:private/busybox:pull")),
        "hull asked no token for repository:private/busybox:pull with credentials: {pulls:?}"
    );
}

#[test]
fn pull_token_auth_without_credentials_fails_and_stores_nothing() {
    let (hull, registry, _image, reference) = serve(Kind::Busybox, Auth::Token, "private/busybox");
    let pushes = registry.token_requests().len();
    hull.fails(&["pull", &reference]);
    assert!(
        registry.token_requests().len() > pushes,
        "hull never asked the token server"
    );
    assert!(store::ref_names(&hull.root).is_empty());
    assert!(store::blob_names(&hull.root).is_empty());
}

#[test]
fn pull_multiarch_selects_the_host_platform_by_default() {
    let (hull, _registry, image, reference) = serve(Kind::MultiArch, Auth::Anonymous, "multi");
    let out = hull.ok(&["pull", &reference]);
    assert_pull_output(&out, &image.digest, "Downloaded newer image", &reference);
    assert_stored(&hull, &reference, &image, host_arch());
    let other = image.manifests.iter().find(|m| m.architecture != host_arch()).unwrap();
    for layer in &other.layers {
        assert!(
            !store::has_blob(&hull.root, layer),
            "layer {layer} of another platform was pulled"
        );
    }
    let skopeo = store::skopeo_inspect(&hull.root, &reference, &[]);
    assert_eq!(skopeo["Architecture"], host_arch());
}

#[test]
fn pull_multiarch_with_platform_linux_arm64_selects_arm64() {
    let (hull, _registry, image, reference) = serve(Kind::MultiArch, Auth::Anonymous, "multi");
    hull.ok(&["pull", "--platform", "linux/arm64", &reference]);
    assert_stored(&hull, &reference, &image, "arm64");
    let amd64 = image.manifest("amd64");
    for layer in &amd64.layers {
        assert!(
            !store::has_blob(&hull.root, layer),
            "amd64 layer {layer} was pulled for arm64"
        );
    }
    let skopeo = store::skopeo_inspect(
        &hull.root,
        &reference,
        &["--override-arch", "arm64", "--override-variant", "v8"],
    );
    assert_eq!(skopeo["Architecture"], "arm64");
}

#[test]
fn pull_platform_with_variant_selects_that_variant() {
    let (hull, _registry, image, reference) = serve(Kind::MultiArch, Auth::Anonymous, "multi");
    hull.ok(&["pull", "--platform", "linux/arm64/v8", &reference]);
    assert_stored(&hull, &reference, &image, "arm64");
}

#[test]
fn pull_zstd_and_gzip_layers_keeps_both_media_types() {
    let (hull, _registry, image, reference) = serve(Kind::Zstd, Auth::Anonymous, "zstd");
    hull.ok(&["pull", &reference]);
    assert_stored(&hull, &reference, &image, "amd64");
    let m = &image.manifests[0];
    assert_eq!(
        m.layer_media_types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    let raw = store::skopeo_inspect(&hull.root, &reference, &["--raw"]);
    let types: Vec<&str> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(types, m.layer_media_types);
}

#[test]
fn pull_docker_v2_schema2_manifest() {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let registry = Registry::start(Auth::Anonymous);
    registry.push_docker_v2(&image.layout, TAG, "docker/busybox:v2");
    let reference = registry.reference("docker/busybox:v2");
    hull.ok(&["pull", &reference]);
    store::assert_consistent(&hull.root);
    let m = &image.manifests[0];
    let inspect = hull.inspect(&reference);
    assert_eq!(inspect["RootFS"]["Layers"], serde_json::json!(m.diff_ids));
    assert_eq!(inspect["Architecture"], "amd64");
    // The store holds it as an OCI manifest of the very same blobs, so OCI tools read it.
    let raw = store::skopeo_inspect(&hull.root, &reference, &["--raw"]);
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(raw["config"]["digest"], m.config.as_str());
    let layers: Vec<String> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(layers, m.layers);
    assert!(raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"));
}

#[test]
fn pull_by_digest_stores_the_manifest() {
    let (hull, registry, image, _reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let m = &image.manifests[0];
    let by_digest = registry.reference(&format!("busybox@{}", m.digest));
    hull.ok(&["pull", &by_digest]);
    store::assert_consistent(&hull.root);
    assert_eq!(hull.inspect(&by_digest)["Id"], m.config.as_str());
}

#[test]
fn pull_ten_concurrent_pulls_all_succeed_and_download_each_blob_once() {
    let (hull, mut registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let children: Vec<_> = (0..10)
        .map(|_| {
            hull.command(&["pull", "-q", &reference])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn hull pull")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait for hull pull");
        assert!(
            out.status.success(),
            "a concurrent pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{reference}\n"));
    }
    assert_stored(&hull, &reference, &image, "amd64");
    assert_eq!(
        store::ref_names(&hull.root).iter().filter(|r| **r == reference).count(),
        1
    );
    for blob in Image::blobs_of(&image.manifests[0]) {
        assert_eq!(
            registry.blob_downloads(&blob),
            1,
            "blob {blob} downloaded more than once"
        );
    }
}

#[test]
fn pull_without_a_reference_is_a_usage_error() {
    let hull = Hull::new();
    let out = hull.run(&["pull"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!hull.root.join("index.json").exists());
}

#[test]
fn pull_from_a_closed_port_fails_naming_the_reference() {
    let hull = Hull::new();
    let port = common::process::free_port();
    let reference = format!("127.0.0.1:{port}/nothing:here");
    let args = ["pull", reference.as_str()];
    let err = check_failure(&args, hull.run(&args));
    assert!(
        err.contains(&reference) || err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn pull_from_a_non_loopback_registry_needs_hull_insecure_registries() {
    let Some(ip) = common::process::non_loopback_ipv4() else {
        eprintln!("skipped: this host has no non-loopback IPv4 address");
        return;
    };
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let registry = Registry::start_on(Auth::Anonymous, &ip);
    registry.push(&image.layout, TAG, "busybox:latest");
    let reference = registry.reference("busybox:latest");
    // Spoken to over TLS by default, which a plain-HTTP registry cannot answer.
    hull.fails(&["pull", &reference]);
    assert!(store::ref_names(&hull.root).is_empty());
    let out = hull
        .command(&["pull", "-q", &reference])
        .env(
            "HULL_INSECURE_REGISTRIES",
            format!("example.com:5000,{}", registry.host),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_stored(&hull, &reference, &image, "amd64");
}

#[test]
fn pull_without_a_tty_prints_plain_lines_per_layer() {
    let (hull, _registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let out = hull.ok(&["pull", &reference]);
    for layer in &image.manifests[0].layers {
        let short = &common::fixtures::hex(layer)[..12];
        assert!(
            out.contains(&format!("{short}: Pull complete")),
            "no line for layer {short}:\n{out}"
        );
    }
}

#[test]
fn pull_on_a_tty_shows_progress_for_each_layer() {
    let (hull, _registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    // script(1) gives hull a pseudo-terminal as stdout.
    let hull_cmd = format!("{} pull {reference}", env!("CARGO_BIN_EXE_hull"));
    let base = hull.command(&[]);
    let envs: Vec<_> = base
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let cmd = std::process::Command::new("script")
        .args(["-qec", &hull_cmd, "/dev/null"])
        .env_remove("HULL_INSECURE_REGISTRIES")
        .envs(envs)
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let out = String::from_utf8_lossy(&cmd.stdout);
    assert!(cmd.status.success(), "hull pull on a tty failed:\n{out}");
    assert!(out.contains("\x1b["), "no progress bars drawn on a terminal:\n{out}");
    for layer in &image.manifests[0].layers {
        let short = &common::fixtures::hex(layer)[..12];
        assert!(out.contains(short), "no progress for layer {short}:\n{out}");
    }
    assert!(out.contains(&format!("Digest: {}", image.digest)), "{out}");
    store::assert_consistent(&hull.root);
}

#[test]
fn pull_basic_auth_falls_back_to_the_home_docker_config() {
    let (hull, registry, image, reference) = serve(Kind::Busybox, Auth::Basic, "private/busybox");
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{USER}:{PASSWORD}"));
    let config = serde_json::json!({ "auths": { registry.host.clone(): { "auth": auth } } });
    std::fs::create_dir_all(hull.home().join(".docker")).unwrap();
    std::fs::write(hull.home().join(".docker/config.json"), config.to_string()).unwrap();
    let out = hull
        .command(&["pull", "-q", &reference])
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_stored(&hull, &reference, &image, "amd64");
}

#[test]
fn pull_without_hull_root_stores_under_xdg_data_home() {
    let (hull, _registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let out = hull
        .command(&["pull", "-q", &reference])
        .env_remove("HULL_ROOT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let root = hull.xdg_data_home().join("hull");
    assert!(store::ref_names(&root).contains(&reference), "no image under {root:?}");
    assert!(store::has_blob(&root, &image.manifests[0].config));
    store::assert_consistent(&root);
    assert!(!hull.root.exists(), "HULL_ROOT was unset, yet {:?} was made", hull.root);
}

#[test]
fn pull_concurrent_pulls_of_different_tags_all_end_up_tagged() {
    let (hull, registry, image, _reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let references: Vec<String> = (0..6)
        .map(|i| {
            let name = format!("copy{i}/busybox:v{i}");
            registry.push(&image.layout, TAG, &name);
            registry.reference(&name)
        })
        .collect();
    let children: Vec<_> = references
        .iter()
        .map(|r| {
            hull.command(&["pull", "-q", r])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn hull pull")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait for hull pull");
        assert!(
            out.status.success(),
            "a concurrent pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut names = store::ref_names(&hull.root);
    names.sort();
    assert_eq!(names, references, "index.json lost an update");
    store::assert_consistent(&hull.root);
}

/// SECURITY.md, host faults: ten concurrent runs of an image not yet pulled make one
/// download, one flatten and ten independent containers. `create` is `run` up to the
/// boot, so this needs no guest.
#[test]
fn ten_concurrent_creates_of_an_unpulled_image_download_and_flatten_it_once() {
    let (hull, mut registry, image, reference) = serve(Kind::Busybox, Auth::Anonymous, "busybox");
    let children: Vec<_> = (0..10)
        .map(|i| {
            hull.create_command(&["--name", &format!("c{i}"), &reference, "true"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn hull create")
        })
        .collect();
    let mut ids = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait for hull create");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "a concurrent create failed: {stderr}");
        ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ten distinct containers: {ids:?}");
    assert_eq!(store::container_dirs(&hull.root), ids);
    for blob in Image::blobs_of(&image.manifests[0]) {
        assert_eq!(
            registry.blob_downloads(&blob),
            1,
            "blob {blob} downloaded more than once"
        );
    }
    let disks = store::rootfs_files(&hull.root);
    assert!(
        disks.len() == 1 && disks[0].ends_with(".erofs"),
        "one root disk, no leftovers: {disks:?}"
    );
    let disk = hull.root.join("rootfs").join(&disks[0]);
    for id in &ids {
        let config = std::fs::read_to_string(hull.root.join("containers").join(id).join("config.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(
            config["rootfs"].as_str(),
            disk.to_str(),
            "container {id} shares the one disk"
        );
    }
    store::assert_consistent(&hull.root);
}
