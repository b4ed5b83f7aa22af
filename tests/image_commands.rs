//! images / image ls, image inspect, image history, tag, rmi, image prune: Docker's
//! output, checked against what the image builder reports.

mod common;

use std::fs;

use common::fixtures::{hex, sha256, short_id, Image, Kind, TAG};
use common::hull::{columns, lines, Hull};
use common::registry::{Auth, Registry};
use common::store;

struct Pulled {
    hull: Hull,
    image: Image,
    /// `127.0.0.1:PORT/busybox:latest`
    reference: String,
    /// `127.0.0.1:PORT/busybox`
    repository: String,
    _registry: Registry,
}

fn pulled() -> Pulled {
    let hull = Hull::new();
    let image = Image::build(&hull.work(), Kind::Busybox);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&image.layout, TAG, "busybox:latest");
    let reference = registry.reference("busybox:latest");
    hull.ok(&["pull", "-q", &reference]);
    let repository = registry.reference("busybox");
    Pulled {
        hull,
        image,
        reference,
        repository,
        _registry: registry,
    }
}

/// Rows of a table, header checked and dropped.
fn rows(out: &str, header: &[&str]) -> Vec<Vec<String>> {
    let lines = lines(out);
    assert!(!lines.is_empty(), "no table printed");
    assert_eq!(columns(lines[0]), header, "header of:\n{out}");
    lines[1..].iter().map(|l| columns(l)).collect()
}

#[test]
fn images_lists_repository_tag_id_created_size() {
    let p = pulled();
    let out = p.hull.ok(&["images"]);
    let rows = rows(&out, &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert_eq!(rows.len(), 1, "one image:\n{out}");
    let row = &rows[0];
    assert_eq!(row[0], p.repository);
    assert_eq!(row[1], "latest");
    assert_eq!(row[2], short_id(&p.image.manifests[0].config));
    assert_eq!(row.len(), 5, "five columns:\n{out}");
}

#[test]
fn image_ls_prints_what_images_prints() {
    let p = pulled();
    assert_eq!(p.hull.ok(&["image", "ls"]), p.hull.ok(&["images"]));
}

#[test]
fn images_quiet_prints_the_short_ids() {
    let p = pulled();
    let out = p.hull.ok(&["images", "-q"]);
    assert_eq!(lines(&out), [short_id(&p.image.manifests[0].config)]);
}

#[test]
fn images_no_trunc_prints_the_full_id() {
    let p = pulled();
    let out = p.hull.ok(&["images", "--no-trunc"]);
    assert!(
        out.contains(&p.image.manifests[0].config),
        "full config digest missing:\n{out}"
    );
}

#[test]
fn images_digests_adds_the_manifest_digest() {
    let p = pulled();
    let out = p.hull.ok(&["images", "--digests"]);
    let rows = rows(&out, &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]);
    assert_eq!(rows[0][2], p.image.digest);
}

#[test]
fn images_format_json_prints_one_object_per_image() {
    let p = pulled();
    let out = p.hull.ok(&["images", "--format", "json"]);
    let objects: Vec<serde_json::Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 1);
    let o = &objects[0];
    assert_eq!(o["Repository"], p.repository.as_str());
    assert_eq!(o["Tag"], "latest");
    let id = o["ID"].as_str().expect("ID");
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    assert!(
        id.len() >= 12 && hex(&p.image.manifests[0].config).starts_with(id),
        "ID {id}"
    );
    assert_eq!(o["Digest"], p.image.digest.as_str());
    for key in ["CreatedAt", "Size"] {
        assert!(o.get(key).is_some(), "{key} missing in {o}");
    }
}

#[test]
fn images_filters_by_repository_and_tag() {
    let p = pulled();
    p.hull.ok(&["tag", &p.reference, "other:v1"]);
    let out = p.hull.ok(&["images", "other"]);
    let rows = rows(&out, &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], "other");
    let out = p.hull.ok(&["images", &p.reference]);
    let rows = self::rows(&out, &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0][0], p.repository);
}

#[test]
fn image_inspect_reports_id_tags_digests_config_and_layers() {
    let p = pulled();
    let m = &p.image.manifests[0];
    let v = p.hull.inspect(&p.reference);
    assert_eq!(v["Id"], m.config.as_str());
    assert_eq!(v["RepoTags"], serde_json::json!([p.reference]));
    assert_eq!(
        v["RepoDigests"],
        serde_json::json!([format!("{}@{}", p.repository, p.image.digest)])
    );
    assert_eq!(
        v["Created"].as_str().map(|c| c.starts_with("2024-01-02T03:04:05")),
        Some(true),
        "{v}"
    );
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v["Config"]["WorkingDir"], "/");
    assert_eq!(v["Config"]["Labels"]["org.hull.test"], "yes");
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert_eq!(v["RootFS"]["Layers"], serde_json::json!(m.diff_ids));
    assert!(v["Size"].as_u64().unwrap_or(0) > 0, "Size: {v}");
}

#[test]
fn image_inspect_of_several_references_prints_one_array() {
    let p = pulled();
    p.hull.ok(&["tag", &p.reference, "second:tag"]);
    let out = p.hull.ok(&["image", "inspect", &p.reference, "second:tag"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v.as_array().map(|a| a.len()), Some(2));
    assert_eq!(v[0]["Id"], v[1]["Id"]);
}

#[test]
fn image_inspect_of_a_missing_image_fails_naming_it() {
    let p = pulled();
    let err = p.hull.fails(&["image", "inspect", "no-such-image:latest"]);
    assert!(err.contains("no-such-image"), "{err}");
}

#[test]
fn image_history_lists_every_entry_newest_first() {
    let p = pulled();
    let m = &p.image.manifests[0];
    let out = p.hull.ok(&["image", "history", "--no-trunc", &p.reference]);
    let rows = rows(&out, &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    assert_eq!(
        rows.len(),
        m.history,
        "one row per history entry, empty layers too:\n{out}"
    );
    assert_eq!(rows[0][0], m.config, "top row is the image:\n{out}");
    for row in &rows[1..] {
        assert_eq!(row[0], "<missing>", "{out}");
    }
    assert!(
        rows[0].iter().any(|c| c.contains(r#"CMD ["/bin/sh"]"#)),
        "newest first:\n{out}"
    );
    assert!(
        rows[m.history - 1].iter().any(|c| c.contains("ADD file:busybox in /")),
        "oldest last:\n{out}"
    );
}

#[test]
fn image_history_truncates_ids_by_default() {
    let p = pulled();
    let out = p.hull.ok(&["image", "history", &p.reference]);
    let lines = lines(&out);
    assert!(lines[1].starts_with(short_id(&p.image.manifests[0].config)), "{out}");
    assert!(!out.contains(hex(&p.image.manifests[0].config)), "{out}");
}

#[test]
fn image_history_quiet_prints_ids_only() {
    let p = pulled();
    let out = p.hull.ok(&["image", "history", "-q", &p.reference]);
    let lines = lines(&out);
    assert_eq!(lines.len(), p.image.manifests[0].history);
    assert_eq!(lines[0], short_id(&p.image.manifests[0].config));
}

#[test]
fn tag_adds_a_normalised_reference_to_the_same_image() {
    let p = pulled();
    p.hull.ok(&["tag", &p.reference, "example/other:v1"]);
    let names = store::ref_names(&p.hull.root);
    assert!(names.contains(&"docker.io/example/other:v1".to_string()), "{names:?}");
    assert!(names.contains(&p.reference), "{names:?}");
    assert_eq!(
        p.hull.inspect("example/other:v1")["Id"],
        p.image.manifests[0].config.as_str()
    );
    let skopeo = store::skopeo_inspect(&p.hull.root, "docker.io/example/other:v1", &[]);
    assert_eq!(skopeo["Digest"], p.image.digest.as_str());
}

#[test]
fn tag_of_a_missing_image_fails_and_adds_nothing() {
    let p = pulled();
    let before = store::ref_names(&p.hull.root);
    let err = p.hull.fails(&["tag", "missing:latest", "other:v1"]);
    assert!(err.contains("missing"), "{err}");
    assert_eq!(store::ref_names(&p.hull.root), before);
}

#[test]
fn rmi_removes_one_tag_and_keeps_the_other() {
    let p = pulled();
    p.hull.ok(&["tag", &p.reference, "keep:me"]);
    p.hull.ok(&["rmi", &p.reference]);
    let names = store::ref_names(&p.hull.root);
    assert_eq!(names, ["docker.io/library/keep:me"]);
    store::assert_consistent(&p.hull.root);
    assert_eq!(p.hull.inspect("keep:me")["Id"], p.image.manifests[0].config.as_str());
}

#[test]
fn image_rm_of_the_last_tag_then_prune_removes_every_blob() {
    let p = pulled();
    p.hull.ok(&["image", "rm", &p.reference]);
    assert!(store::ref_names(&p.hull.root).is_empty());
    p.hull.fails(&["image", "inspect", &p.reference]);
    p.hull.ok(&["image", "prune", "-f"]);
    let left = store::blob_names(&p.hull.root);
    for blob in Image::blobs_of(&p.image.manifests[0]) {
        assert!(
            !left.contains(&hex(&blob).to_string()),
            "blob {blob} survived rmi and prune"
        );
    }
    store::assert_consistent(&p.hull.root);
}

#[test]
fn rmi_of_a_missing_image_fails_naming_it() {
    let p = pulled();
    let err = p.hull.fails(&["rmi", "not-here:v9"]);
    assert!(err.contains("not-here"), "{err}");
    assert_eq!(store::ref_names(&p.hull.root), std::slice::from_ref(&p.reference));
}

#[test]
fn image_prune_keeps_tagged_images_and_removes_stray_blobs() {
    let p = pulled();
    let stray = b"a blob nothing refers to";
    let stray_digest = sha256(stray);
    fs::write(p.hull.root.join("blobs/sha256").join(hex(&stray_digest)), stray).unwrap();
    p.hull.ok(&["image", "prune", "-f"]);
    assert!(
        !store::has_blob(&p.hull.root, &stray_digest),
        "prune left an unreferenced blob"
    );
    for blob in Image::blobs_of(&p.image.manifests[0]) {
        assert!(
            store::has_blob(&p.hull.root, &blob),
            "prune removed {blob} of a tagged image"
        );
    }
    store::assert_consistent(&p.hull.root);
    let skopeo = store::skopeo_inspect(&p.hull.root, &p.reference, &[]);
    assert_eq!(skopeo["Digest"], p.image.digest.as_str());
}

#[test]
fn image_inspect_by_short_id_finds_the_image() {
    let p = pulled();
    let id = short_id(&p.image.manifests[0].config);
    assert_eq!(p.hull.inspect(id)["Id"], p.image.manifests[0].config.as_str());
}

#[test]
fn rmi_force_by_id_removes_every_tag_of_the_image() {
    let p = pulled();
    p.hull.ok(&["tag", &p.reference, "second:tag"]);
    let id = short_id(&p.image.manifests[0].config);
    p.hull.ok(&["rmi", "-f", id]);
    assert!(
        store::ref_names(&p.hull.root).is_empty(),
        "{:?}",
        store::ref_names(&p.hull.root)
    );
    store::assert_consistent(&p.hull.root);
}

/// The busybox and zstd images share their first layer (the same busybox tar, gzip).
fn two_images_sharing_a_layer() -> (Hull, Registry, Image, Image, String, String) {
    let hull = Hull::new();
    let busybox = Image::build(&hull.work(), Kind::Busybox);
    let zstd = Image::build(&hull.work(), Kind::Zstd);
    assert_eq!(busybox.manifests[0].layers[0], zstd.manifests[0].layers[0]);
    let registry = Registry::start(Auth::Anonymous);
    registry.push(&busybox.layout, TAG, "busybox:latest");
    registry.push(&zstd.layout, TAG, "zstd:latest");
    let (a, b) = (registry.reference("busybox:latest"), registry.reference("zstd:latest"));
    (hull, registry, busybox, zstd, a, b)
}

#[test]
fn pull_of_a_second_image_reuses_the_layer_it_shares() {
    let (hull, mut registry, busybox, _zstd, a, b) = two_images_sharing_a_layer();
    hull.ok(&["pull", &a]);
    let out = hull.ok(&["pull", &b]);
    let shared = &busybox.manifests[0].layers[0];
    assert_eq!(
        registry.blob_downloads(shared),
        1,
        "the shared layer was downloaded again"
    );
    assert!(
        out.contains(&format!("{}: Already exists", &hex(shared)[..12])),
        "{out}"
    );
}

#[test]
fn rmi_and_prune_keep_a_layer_another_image_uses() {
    let (hull, _registry, busybox, zstd, a, b) = two_images_sharing_a_layer();
    hull.ok(&["pull", "-q", &a]);
    hull.ok(&["pull", "-q", &b]);
    hull.ok(&["rmi", &a]);
    hull.ok(&["image", "prune", "-f"]);
    store::assert_consistent(&hull.root);
    for blob in Image::blobs_of(&zstd.manifests[0]) {
        assert!(
            store::has_blob(&hull.root, &blob),
            "{blob} of the remaining image was removed"
        );
    }
    let only_busybox: Vec<_> = Image::blobs_of(&busybox.manifests[0])
        .into_iter()
        .filter(|d| !Image::blobs_of(&zstd.manifests[0]).contains(d))
        .collect();
    assert!(!only_busybox.is_empty());
    for blob in only_busybox {
        assert!(
            !store::has_blob(&hull.root, &blob),
            "{blob} of the removed image survived prune"
        );
    }
    assert_eq!(hull.inspect(&b)["Id"], zstd.manifests[0].config.as_str());
}

#[test]
fn pull_of_a_moved_tag_takes_the_new_image_and_prune_drops_the_old() {
    let (hull, registry, busybox, zstd, _a, _b) = two_images_sharing_a_layer();
    let app = registry.reference("app:latest");
    registry.push(&busybox.layout, TAG, "app:latest");
    hull.ok(&["pull", "-q", &app]);
    registry.push(&zstd.layout, TAG, "app:latest");
    let out = hull.ok(&["pull", &app]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {app}")),
        "{out}"
    );
    assert_eq!(hull.inspect(&app)["Id"], zstd.manifests[0].config.as_str());
    let listed = hull.ok(&["images", "-q"]);
    assert!(
        lines(&listed).contains(&short_id(&zstd.manifests[0].config)),
        "{listed}"
    );

    hull.ok(&["image", "prune", "-f"]);
    store::assert_consistent(&hull.root);
    let listed = hull.ok(&["images", "-q"]);
    assert_eq!(
        lines(&listed),
        [short_id(&zstd.manifests[0].config)],
        "the old image is gone"
    );
    assert!(
        !store::has_blob(&hull.root, &busybox.manifests[0].config),
        "prune kept the old config"
    );
    for blob in Image::blobs_of(&zstd.manifests[0]) {
        assert!(
            store::has_blob(&hull.root, &blob),
            "prune removed {blob} of the tagged image"
        );
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let hull = Hull::new();
    let out = hull.run(&["images", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!hull.root.join("index.json").exists());
}

#[test]
fn a_closed_stdout_ends_the_command_without_a_panic() {
    use std::os::fd::FromRawFd;
    use std::os::unix::process::ExitStatusExt;
    let p = pulled();
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into `fds`, which we then own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (reader, writer) = unsafe { (fs::File::from_raw_fd(fds[0]), fs::File::from_raw_fd(fds[1])) };
    drop(reader);
    for args in [vec!["images"], vec!["image", "inspect", p.reference.as_str()]] {
        let out = p
            .hull
            .command(&args)
            .stdout(writer.try_clone().unwrap())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "hull {args:?} panicked on EPIPE:\n{stderr}"
        );
        let killed_by_sigpipe = out.status.signal() == Some(libc::SIGPIPE);
        let clean = matches!(out.status.code(), Some(0) | Some(125)) && lines(&stderr).len() <= 1;
        assert!(
            killed_by_sigpipe || clean,
            "hull {args:?} on a closed stdout: {}\n{stderr}",
            out.status
        );
    }
}
