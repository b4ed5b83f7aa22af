//! Named volumes: directories under the store's `volumes/` that containers mount with
//! `-v NAME:/path`. `volumes/<name>/_data` is what the container sees;
//! `volumes/<name>/volume.json` records the creation time.
//!
//! A volume appears whole or not at all: it is assembled in a `.tmp-*` directory and
//! renamed into place; a removal renames it to a `.rm-*` directory first. Leftovers of
//! either (a crash half-way) are removed by the next listing once a minute old.
//! Removing a volume a container references is refused; the caller checks that under
//! the containers' lock (see [`super::ContainerStore::with_containers`]).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    #[error("invalid volume name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at least 2 characters)")]
    InvalidName(String),
    #[error("remove {name}: volume is in use by container {container}")]
    InUse { name: String, container: String },
    #[error("volume {name}: {op} {path}")]
    Io {
        name: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("volume {name}: record {path} is corrupt")]
    Corrupt {
        name: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, VolumeError>;

/// One volume, as `volume inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// The directory containers see (`_data`).
    pub mountpoint: PathBuf,
    pub created: DateTime<Utc>,
    /// Made without a name (a random one was given): `volume prune` removes these
    /// only, unless told `--all`, as Docker does.
    pub anonymous: bool,
}

#[derive(Serialize, Deserialize)]
struct Record {
    name: String,
    created: DateTime<Utc>,
    /// Absent in records written before it existed: those volumes count as named.
    #[serde(default)]
    anonymous: bool,
}

const RECORD: &str = "volume.json";
const DATA: &str = "_data";
const STALE_SECS: u64 = 60;

/// The `volumes/` directory of a store.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    dir: PathBuf,
}

fn io_err<'a>(name: &'a str, op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        name: name.to_owned(),
        op,
        path: path.to_owned(),
        source,
    }
}

/// Checks a volume name (the container name rule).
pub fn validate_name(name: &str) -> Result<()> {
    if names::follows_name_rule(name) {
        Ok(())
    } else {
        Err(VolumeError::InvalidName(name.chars().take(140).collect()))
    }
}

impl VolumeStore {
    pub fn open(store_root: &Path) -> Result<VolumeStore> {
        let dir = store_root.join("volumes");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("store", "create", &dir))?;
        Ok(VolumeStore { dir })
    }

    /// The data directory of volume `name` (whether or not it exists).
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.dir.join(name).join(DATA)
    }

    /// The data directory volume `name` has in the store at `store_root`.
    pub fn data_dir(store_root: &Path, name: &str) -> PathBuf {
        store_root.join("volumes").join(name).join(DATA)
    }

    /// Finds volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        validate_name(name).map_err(|_| VolumeError::NoSuchVolume(name.chars().take(140).collect()))?;
        let record_path = self.dir.join(name).join(RECORD);
        let bytes = match fs::read(&record_path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VolumeError::NoSuchVolume(name.into())),
            Err(e) => return Err(io_err(name, "read", &record_path)(e)),
        };
        let record: Record = serde_json::from_slice(&bytes).map_err(|source| VolumeError::Corrupt {
            name: name.into(),
            path: record_path.clone(),
            source,
        })?;
        Ok(Volume {
            name: name.into(),
            mountpoint: self.mountpoint(name),
            created: record.created,
            anonymous: record.anonymous,
        })
    }

    /// Creates volume `name` (a random one when `None`); an existing volume is
    /// returned as it is, as Docker does.
    pub fn create(&self, name: Option<&str>) -> Result<Volume> {
        let anonymous = name.is_none();
        let name = match name {
            Some(n) => {
                validate_name(n)?;
                n.to_owned()
            }
            None => names::new_id().map_err(io_err("(new)", "generate a name for", &self.dir))?,
        };
        match self.get(&name) {
            Err(VolumeError::NoSuchVolume(_)) => {}
            found => return found,
        }
        let tmp = self.assemble(&name, anonymous)?;
        let dest = self.dir.join(&name);
        match fs::rename(&tmp, &dest) {
            Ok(()) => {}
            // Created meanwhile by someone else: theirs stands.
            Err(e) if dest.join(RECORD).exists() => {
                let _ = fs::remove_dir_all(&tmp);
                tracing::debug!("volume {name} created concurrently: {e}");
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(io_err(&name, "create", &dest)(e));
            }
        }
        self.get(&name)
    }

    /// A complete volume directory under a temporary name.
    fn assemble(&self, name: &str, anonymous: bool) -> Result<PathBuf> {
        let suffix = names::new_id().map_err(io_err(name, "create", &self.dir))?;
        let tmp = self.dir.join(format!(".tmp-{}", &suffix[..16]));
        let result = (|| {
            fs::DirBuilder::new().mode(0o700).create(&tmp)?;
            fs::DirBuilder::new().mode(0o755).create(tmp.join(DATA))?;
            let record = Record {
                name: name.into(),
                created: Utc::now(),
                anonymous,
            };
            let bytes = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
            fs::write(tmp.join(RECORD), bytes)?;
            fs::File::open(&tmp)?.sync_all()
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(io_err(name, "create", &tmp)(e))
            }
        }
    }

    /// Every volume, by name. Leftovers of interrupted creates and removals are
    /// cleaned up.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("store", "read", &self.dir))?;
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") || name.starts_with(".rm-") {
                remove_if_stale(&entry.path());
                continue;
            }
            if let Ok(volume) = self.get(&name) {
                all.push(volume);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Removes volume `name` and everything in it. The caller has checked that no
    /// container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let dir = self.dir.join(name);
        let suffix = names::new_id().map_err(io_err(name, "remove", &dir))?;
        let doomed = self.dir.join(format!(".rm-{}", &suffix[..16]));
        fs::rename(&dir, &doomed).map_err(io_err(name, "remove", &dir))?;
        remove_tree(&doomed).map_err(io_err(name, "remove", &doomed))
    }
}

fn remove_if_stale(path: &Path) {
    let stale = fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default().as_secs() > STALE_SECS)
        .unwrap_or(false);
    if stale {
        let _ = remove_tree(path);
    }
}

/// `remove_dir_all`, also through directories a container left without write or
/// search permission for their owner (mode 0555, 0000).
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            fs::remove_dir_all(path)
        }
        other => other,
    }
}

/// Gives the owner rwx on every directory below `dir`, never following a symlink.
fn open_up(dir: &Path) {
    let is_dir = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !is_dir(dir) {
        return;
    }
    if let Ok(m) = fs::symlink_metadata(dir) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(m.permissions().mode() | 0o700));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            open_up(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_created_listed_and_removed() {
        let root = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        let v = store.create(Some("data1")).unwrap();
        assert_eq!(v.mountpoint, root.path().join("volumes/data1/_data"));
        assert!(v.mountpoint.is_dir());
        std::fs::write(v.mountpoint.join("f"), "x").unwrap();
        // Creating it again keeps it (and its files).
        assert_eq!(store.create(Some("data1")).unwrap(), v);
        assert!(v.mountpoint.join("f").exists());
        let random = store.create(None).unwrap();
        assert_eq!(random.name.len(), 64);
        let names: Vec<_> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"data1".to_owned()));
        store.remove("data1").unwrap();
        assert!(matches!(store.get("data1"), Err(VolumeError::NoSuchVolume(n)) if n == "data1"));
        assert!(matches!(store.remove("data1"), Err(VolumeError::NoSuchVolume(_))));
        assert_eq!(store.list().unwrap().len(), 1);
        // Only the volume itself is left in the directory: no temporaries.
        assert_eq!(std::fs::read_dir(root.path().join("volumes")).unwrap().count(), 1);
    }

    #[test]
    fn bad_names_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        for bad in ["", "x", "../x", ".tmp-1", "a/b", "a b", "-x"] {
            assert!(
                matches!(store.create(Some(bad)), Err(VolumeError::InvalidName(_))),
                "{bad}"
            );
            assert!(matches!(store.get(bad), Err(VolumeError::NoSuchVolume(_))), "{bad}");
        }
    }

    #[test]
    fn removal_gets_through_locked_directories_without_following_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "x").unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        let v = store.create(Some("locked")).unwrap();
        let sub = v.mountpoint.join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), v.mountpoint.join("link")).unwrap();
        std::fs::set_permissions(&sub, fs::Permissions::from_mode(0o500)).unwrap();
        store.remove("locked").unwrap();
        assert!(outside.path().join("keep").exists());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn stale_leftovers_are_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(root.path()).unwrap();
        let old = root.path().join("volumes/.tmp-0123");
        std::fs::create_dir_all(old.join(DATA)).unwrap();
        let fresh = root.path().join("volumes/.rm-4567");
        std::fs::create_dir(&fresh).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::open(&old).unwrap().set_modified(past).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(!old.exists());
        assert!(fresh.exists(), "a fresh one may still be in use");
    }
}
