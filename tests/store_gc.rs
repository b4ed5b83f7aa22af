//! The store's own removals never take what a container uses: `rmi`, `image prune`,
//! `system prune` against containers that are created but never booted, root disks
//! reclaimed under their build lock, and `system df` against what is on disk.
//!
//! `hull create` opens /dev/kvm (the one privilege hull needs) but boots nothing.

mod common;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::fixtures::{hex, short_id, Image, Kind};
use common::hull::{columns, lines, Hull};
use common::store;

const BUSYBOX: &str = "example.com/hull/busybox:1.0";
const ZSTD: &str = "example.com/hull/zstd:1.0";

/// A store holding the busybox image as `BUSYBOX` (and, with `both`, the zstd image,
/// which shares its first layer, as `ZSTD`).
fn store_with(both: bool) -> (Hull, Image, Option<Image>) {
    let hull = Hull::new();
    let busybox = Image::build_tagged(&hull.work(), Kind::Busybox, BUSYBOX);
    hull.load_layout(&busybox.layout);
    let zstd = both.then(|| {
        let zstd = Image::build_tagged(&hull.work(), Kind::Zstd, ZSTD);
        hull.load_layout(&zstd.layout);
        zstd
    });
    (hull, busybox, zstd)
}

/// `hull image rootfs REF`: the path of the image's root disk.
fn root_disk(hull: &Hull, reference: &str) -> PathBuf {
    let out = hull.ok(&["image", "rootfs", reference]);
    PathBuf::from(out.split('\t').next().unwrap())
}

/// `hull inspect` of a container.
fn inspect(hull: &Hull, container: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&hull.ok(&["inspect", container])).unwrap();
    v[0].clone()
}

/// Every blob of the image (manifest, config, layers) is still stored.
fn assert_blobs_kept(hull: &Hull, image: &Image) {
    let m = &image.manifests[0];
    for blob in Image::blobs_of(m).iter().chain([&m.digest]) {
        assert!(store::has_blob(&hull.root, blob), "{blob} of a used image was removed");
    }
}

fn blobs_only_in(image: &Image, other: &Image) -> Vec<String> {
    let theirs = Image::blobs_of(&other.manifests[0]);
    let mut mine = Image::blobs_of(&image.manifests[0]);
    mine.push(image.manifests[0].digest.clone());
    mine.into_iter().filter(|b| !theirs.contains(b)).collect()
}

fn containers(hull: &Hull) -> Vec<String> {
    lines(&hull.ok(&["ps", "-a", "-q", "--no-trunc"]))
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[test]
fn rmi_of_an_image_a_created_container_uses_is_refused() {
    let (hull, busybox, _) = store_with(false);
    let id = hull.create_container(&["--name", "user", BUSYBOX, "true"]);
    let images_before = hull.ok(&["images"]);
    let config = &busybox.manifests[0].config;

    let err = hull.fails(&["rmi", BUSYBOX]);
    let want = format!(
        "hull: conflict: unable to remove repository reference \"{BUSYBOX}\" (must force) - container {} is using its referenced image {}",
        &id[..12],
        short_id(config)
    );
    assert_eq!(err, want);
    let err = hull.fails(&["rmi", short_id(config)]);
    assert!(
        err.contains("must be forced") && err.contains(&format!("stopped container {}", &id[..12])),
        "{err}"
    );

    assert_eq!(hull.ok(&["images"]), images_before);
    assert_eq!(store::ref_names(&hull.root), [BUSYBOX]);
    assert_blobs_kept(&hull, &busybox);
    store::assert_consistent(&hull.root);
}

#[test]
fn rmi_force_untags_and_the_container_keeps_its_image_and_root_disk() {
    let (hull, busybox, _) = store_with(false);
    hull.create_container(&["--name", "user", BUSYBOX, "true"]);
    let disk = PathBuf::from(inspect(&hull, "user")["Hull"]["RootDisk"].as_str().unwrap().to_owned());
    assert!(disk.is_file(), "create built the root disk {}", disk.display());

    let out = hull.ok(&["rmi", "-f", BUSYBOX]);
    assert_eq!(lines(&out), [format!("Untagged: {BUSYBOX}")], "no Deleted: line");
    assert!(store::ref_names(&hull.root).is_empty());
    let listed = hull.ok(&["images", "-q"]);
    assert_eq!(
        lines(&listed),
        [short_id(&busybox.manifests[0].config)],
        "kept, dangling"
    );

    // Neither a dangling prune nor prune -a takes it while the container exists.
    hull.ok(&["image", "prune", "-f"]);
    hull.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(inspect(&hull, "user")["Image"], busybox.manifests[0].config.as_str());
    assert_blobs_kept(&hull, &busybox);
    assert!(disk.is_file(), "the container's root disk was removed");
    store::assert_consistent(&hull.root);

    // Once the container is gone, so is everything of the image.
    hull.ok(&["rm", "user"]);
    hull.ok(&["image", "prune", "-f"]);
    assert!(hull.ok(&["images", "-q"]).trim().is_empty());
    assert!(
        store::blob_names(&hull.root).is_empty(),
        "{:?}",
        store::blob_names(&hull.root)
    );
    assert!(!disk.exists(), "the unused root disk stayed");
}

#[test]
fn rmi_of_one_of_two_tags_of_a_used_image_only_untags() {
    let (hull, busybox, _) = store_with(false);
    hull.create_container(&[BUSYBOX, "true"]);
    hull.ok(&["tag", BUSYBOX, "second:tag"]);
    let out = hull.ok(&["rmi", "second:tag"]);
    assert_eq!(lines(&out), ["Untagged: second:tag"]);
    assert_eq!(store::ref_names(&hull.root), [BUSYBOX]);
    assert_blobs_kept(&hull, &busybox);
}

#[test]
fn a_retagged_name_does_not_free_the_image_a_container_was_created_from() {
    let (hull, busybox, zstd) = store_with(true);
    let zstd = zstd.unwrap();
    hull.create_container(&["--name", "user", BUSYBOX, "true"]);
    // The tag now names another image: the container's image is dangling.
    hull.ok(&["tag", ZSTD, BUSYBOX]);
    hull.ok(&["image", "prune", "-f"]);
    assert_blobs_kept(&hull, &busybox);
    // And removing the tag that names the other image is no conflict.
    hull.ok(&["rmi", BUSYBOX, ZSTD]);
    hull.ok(&["image", "prune", "-a", "-f"]);
    assert_blobs_kept(&hull, &busybox);
    for blob in blobs_only_in(&zstd, &busybox) {
        assert!(
            !store::has_blob(&hull.root, &blob),
            "{blob} of the unused image survived"
        );
    }
    store::assert_consistent(&hull.root);
}

#[test]
fn prune_all_keeps_a_used_image_with_its_tags() {
    let (hull, busybox, zstd) = store_with(true);
    let zstd = zstd.unwrap();
    hull.create_container(&[BUSYBOX, "true"]);
    let out = hull.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("untagged: {ZSTD}")), "{out}");
    assert!(!out.contains(BUSYBOX), "{out}");
    assert_eq!(store::ref_names(&hull.root), [BUSYBOX]);
    assert_blobs_kept(&hull, &busybox);
    let gone = blobs_only_in(&zstd, &busybox);
    assert!(!gone.is_empty());
    for blob in gone {
        assert!(
            !store::has_blob(&hull.root, &blob),
            "{blob} of the unused image survived"
        );
    }
    store::assert_consistent(&hull.root);
}

#[test]
fn prune_reclaims_the_root_disk_of_a_removed_image_and_keeps_the_used_one() {
    let (hull, _busybox, _zstd) = store_with(true);
    let id = hull.create_container(&[BUSYBOX, "true"]);
    let used = root_disk(&hull, BUSYBOX);
    let unused = root_disk(&hull, ZSTD);
    assert_ne!(used, unused);
    // A build killed half-way leaves a temporary file, with nobody holding its lock.
    let leftover = used.with_file_name(format!("{}.erofs.tmp", "ab".repeat(32)));
    fs::write(&leftover, vec![1u8; 8192]).unwrap();

    hull.ok(&["image", "prune", "-f"]);
    assert!(
        unused.is_file(),
        "a dangling-only prune keeps the disk of a tagged image"
    );
    hull.ok(&["rmi", ZSTD]);
    assert!(unused.is_file(), "rmi leaves root disks to prune");
    let out = hull.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!unused.exists(), "the disk of the removed image stayed");
    assert!(!leftover.exists(), "the killed build's temporary file stayed");
    assert!(used.is_file(), "the disk a container uses was removed");
    assert_eq!(inspect(&hull, &id)["Hull"]["RootDisk"], used.to_str().unwrap());
}

/// Holds the exclusive `flock` a builder holds while it builds that disk.
struct BuildLock {
    _file: fs::File,
}

impl BuildLock {
    fn hold(disk_dir: &Path, chain_hex: &str) -> BuildLock {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(disk_dir.join(format!("{chain_hex}.lock")))
            .unwrap();
        // SAFETY: flock on a descriptor `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0);
        BuildLock { _file: file }
    }
}

#[test]
fn a_root_disk_whose_build_lock_is_held_is_left_alone() {
    let (hull, _busybox, _zstd) = store_with(true);
    let disk = root_disk(&hull, ZSTD);
    let dir = disk.parent().unwrap().to_owned();
    let chain = disk.file_stem().unwrap().to_str().unwrap().to_owned();
    hull.ok(&["rmi", ZSTD]);
    // A build in progress of another disk: its temporary file, its lock held.
    let other = "cd".repeat(32);
    let building = dir.join(format!("{other}.erofs.tmp"));
    fs::write(&building, b"half a disk").unwrap();

    let held = (BuildLock::hold(&dir, &chain), BuildLock::hold(&dir, &other));
    hull.ok(&["image", "prune", "-f"]);
    assert!(disk.is_file(), "a disk whose build lock is held was removed");
    assert!(building.is_file(), "a build in progress lost its temporary file");

    drop(held);
    hull.ok(&["image", "prune", "-f"]);
    assert!(!disk.exists());
    assert!(!building.exists());
}

/// `hull system df --format json`: the line of `kind`.
fn df_line(hull: &Hull, kind: &str) -> serde_json::Value {
    let out = hull.ok(&["system", "df", "--format", "json"]);
    lines(&out)
        .into_iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["Type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in:\n{out}"))
}

/// Bytes allocated by `path` and everything below it, as `du -sB1` counts them.
fn du(path: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .args(["-s", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn bytes(v: &serde_json::Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("{field} in {v}"))
}

#[test]
fn system_df_numbers_match_what_is_on_disk() {
    let (hull, busybox, zstd) = store_with(true);
    let zstd = zstd.unwrap();
    let id = hull.create_container(&["--name", "user", BUSYBOX, "true"]);
    root_disk(&hull, ZSTD);
    hull.ok(&["volume", "create", "data"]);
    let volume = hull.root.join("volumes/data");
    fs::write(volume.join("_data/file"), vec![7u8; 3 << 20]).unwrap();

    let volumes = df_line(&hull, "Local Volumes");
    assert_eq!(
        (volumes["TotalCount"].as_str(), volumes["Active"].as_str()),
        (Some("1"), Some("0"))
    );
    assert_eq!(bytes(&volumes, "SizeBytes"), du(&volume));
    assert!(bytes(&volumes, "SizeBytes") >= 3 << 20);
    assert_eq!(bytes(&volumes, "ReclaimableBytes"), du(&volume));

    let containers = df_line(&hull, "Containers");
    let dir = hull.root.join("containers").join(&id);
    assert_eq!(bytes(&containers, "SizeBytes"), du(&dir));
    assert!(du(&dir) < 1 << 30, "the sparse writable disk counts what it holds");
    assert_eq!(
        bytes(&containers, "ReclaimableBytes"),
        du(&dir),
        "a created container is not running"
    );

    let disks = df_line(&hull, "Root disks");
    let all_disks = du(&root_disk(&hull, BUSYBOX)) + du(&root_disk(&hull, ZSTD));
    assert_eq!(disks["TotalCount"], "2");
    assert_eq!(disks["Active"], "1");
    assert_eq!(bytes(&disks, "SizeBytes"), all_disks);
    assert_eq!(bytes(&disks, "ReclaimableBytes"), du(&root_disk(&hull, ZSTD)));

    let images = df_line(&hull, "Images");
    assert_eq!(
        (images["TotalCount"].as_str(), images["Active"].as_str()),
        (Some("2"), Some("1"))
    );
    let blob = |d: &String| du(&hull.root.join("blobs/sha256").join(hex(d)));
    let mut all: Vec<String> = [&busybox, &zstd]
        .iter()
        .flat_map(|i| {
            Image::blobs_of(&i.manifests[0])
                .into_iter()
                .chain([i.manifests[0].digest.clone()])
        })
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(bytes(&images, "SizeBytes"), all.iter().map(blob).sum::<u64>());
    let only_zstd: u64 = blobs_only_in(&zstd, &busybox).iter().map(blob).sum();
    assert_eq!(bytes(&images, "ReclaimableBytes"), only_zstd);

    let table = hull.ok(&["system", "df"]);
    let rows = lines(&table);
    assert_eq!(columns(rows[0]), ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
    let kinds: Vec<String> = rows[1..].iter().map(|r| columns(r)[0].clone()).collect();
    assert_eq!(kinds, ["Images", "Containers", "Local Volumes", "Root disks"]);
    assert!(
        rows[3].contains("(100%)"),
        "an unused volume is all reclaimable: {table}"
    );
    let verbose = hull.ok(&["system", "df", "-v"]);
    for needle in [
        "Images space usage:",
        "Containers space usage:",
        &id[..12],
        "data",
        BUSYBOX.rsplit_once(':').unwrap().0,
    ] {
        assert!(verbose.contains(needle), "{needle} missing from:\n{verbose}");
    }
}

/// Makes a created container look running: its monitor is this test process.
fn fake_running(hull: &Hull, id: &str) {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    let start_time: u64 = after.split_whitespace().nth(19).unwrap().parse().unwrap();
    let path = hull.root.join("containers").join(id).join("state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    state["status"] = "running".into();
    state["monitor"] = serde_json::json!({"pid": std::process::id(), "start_time": start_time});
    state["started_at"] = chrono::Utc::now().to_rfc3339().into();
    fs::write(&path, serde_json::to_vec(&state).unwrap()).unwrap();
}

#[test]
fn system_prune_removes_a_stopped_container_but_not_a_used_image() {
    let (hull, busybox, zstd) = store_with(true);
    let zstd = zstd.unwrap();
    let running = hull.create_container(&["--name", "up", BUSYBOX, "true"]);
    fake_running(&hull, &running);
    let stopped = hull.create_container(&["--name", "down", ZSTD, "true"]);
    let disk = root_disk(&hull, BUSYBOX);
    hull.ok(&["volume", "create", "spare"]);

    let out = hull.ok(&["system", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("Deleted Containers:\n{stopped}\n")), "{out}");
    assert!(out.contains(&format!("untagged: {ZSTD}")), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(containers(&hull), std::slice::from_ref(&running));
    assert_eq!(store::ref_names(&hull.root), [BUSYBOX]);
    assert_blobs_kept(&hull, &busybox);
    assert!(disk.is_file(), "the running container's root disk was removed");
    for blob in blobs_only_in(&zstd, &busybox) {
        assert!(
            !store::has_blob(&hull.root, &blob),
            "{blob} of the unused image survived"
        );
    }
    assert_eq!(
        lines(&hull.ok(&["volume", "ls", "-q"])),
        ["spare"],
        "volumes only with --volumes"
    );
    hull.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(hull.ok(&["volume", "ls", "-q"]).trim().is_empty());
    assert_eq!(containers(&hull), [running]);
    store::assert_consistent(&hull.root);
}

#[test]
fn system_prune_without_force_asks_and_removes_nothing_unless_told_yes() {
    let (hull, _busybox, _zstd) = store_with(true);
    let id = hull.create_container(&[BUSYBOX, "true"]);
    hull.ok(&["rmi", ZSTD]);
    let before = store::tree(&hull.root);
    for answer in [Some("n\n"), None] {
        let mut cmd = hull.command(&["system", "prune"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(answer) = answer {
            stdin.write_all(answer.as_bytes()).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Are you sure you want to continue? [y/N]"), "{text}");
        assert!(!text.contains("Deleted"), "{text}");
        assert_eq!(store::tree(&hull.root), before, "answer {answer:?} removed something");
    }
    let mut cmd = hull.command(&["system", "prune"]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"y\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    assert!(containers(&hull).is_empty(), "yes removes the stopped container {id}");
}

#[test]
fn an_unreadable_container_record_keeps_every_image() {
    let (hull, busybox, _) = store_with(false);
    let id = hull.create_container(&[BUSYBOX, "true"]);
    fs::write(hull.root.join("containers").join(&id).join("config.json"), b"{broken").unwrap();
    let out = hull.run(&["image", "prune", "-a", "-f"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("container {id}")) && stderr.contains("cannot be read"),
        "{stderr}"
    );
    assert_eq!(store::ref_names(&hull.root), [BUSYBOX]);
    assert_blobs_kept(&hull, &busybox);
    // Untagging is allowed, but the image stays, dangling, with every blob.
    hull.ok(&["rmi", BUSYBOX]);
    let listed = hull.ok(&["images", "-q"]);
    assert_eq!(lines(&listed), [short_id(&busybox.manifests[0].config)]);
    assert_blobs_kept(&hull, &busybox);
}
