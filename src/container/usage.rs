//! What containers hold on to in the store: the image each was created from (by
//! manifest digest) and its root disk. `rmi`, `image prune` and `system prune` keep
//! all of it while the container exists, in any state.
//!
//! Read from each container's `config.json`: strictly when it parses, else leniently
//! (only the fields needed here). A record that says nothing readable about its image
//! is reported as unreadable, so that callers keep everything rather than guess.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ContainerStore, Result};
use crate::image::digest::Digest;

/// The image and root disk of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    pub container: String,
    pub running: bool,
    /// Absent in records made before the manifest was recorded.
    pub manifest: Option<Digest>,
    /// The image id (config digest).
    pub image_id: Option<String>,
    pub rootfs: Option<PathBuf>,
}

/// What every container of a store uses.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub uses: Vec<ImageUse>,
    /// Containers whose record cannot be read: what they use is unknown.
    pub unreadable: Vec<String>,
}

impl Usage {
    /// Whether every container's record could be read.
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }

    /// The first container created from the image with manifest `manifest` and id
    /// `config` (records without a manifest digest are matched by the image id).
    pub fn user_of(&self, manifest: &Digest, config: &Digest) -> Option<&ImageUse> {
        self.users_of(manifest, config).next()
    }

    /// Every container created from that image.
    pub fn users_of<'a>(&'a self, manifest: &Digest, config: &Digest) -> impl Iterator<Item = &'a ImageUse> + 'a {
        let (manifest, id) = (manifest.clone(), config.to_string());
        self.uses.iter().filter(move |u| match &u.manifest {
            Some(m) => *m == manifest,
            None => u.image_id.as_deref() == Some(id.as_str()),
        })
    }

    /// Whether the image must stay: a container uses it, or some record is unreadable.
    pub fn keeps(&self, manifest: &Digest, config: &Digest) -> bool {
        !self.is_complete() || self.user_of(manifest, config).is_some()
    }

    /// The manifest digests of the images containers were created from.
    pub fn manifests(&self) -> Vec<Digest> {
        let mut all: Vec<Digest> = self.uses.iter().filter_map(|u| u.manifest.clone()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Whether a container boots from the disk at `path` (compared by file name, so
    /// a store named by another path still matches).
    pub fn uses_disk(&self, path: &Path) -> bool {
        self.disk_users(path) > 0
    }

    /// How many containers boot from the disk at `path`.
    pub fn disk_users(&self, path: &Path) -> usize {
        let Some(name) = path.file_name() else { return 1 };
        self.uses
            .iter()
            .filter(|u| u.rootfs.as_ref().and_then(|r| r.file_name()) == Some(name))
            .count()
    }
}

/// The fields of `config.json` this module needs, each optional.
#[derive(Deserialize)]
struct Held {
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default)]
    image_manifest: Option<String>,
    #[serde(default)]
    rootfs: Option<PathBuf>,
}

impl ContainerStore {
    /// What every container uses. Directories without `config.json` (a create that
    /// died half-way, or one in progress: creates hold the store's pin, so the caller
    /// excludes them with the garbage collector's lock) use nothing.
    pub fn usage(&self) -> Result<Usage> {
        let entries = fs::read_dir(&self.dir).map_err(|source| super::ContainerError::Store {
            path: self.dir.clone(),
            source,
        })?;
        let mut usage = Usage::default();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            match self.image_use(&id) {
                Record::Uses(u) => usage.uses.push(u),
                Record::NoConfig => {}
                Record::Unreadable => usage.unreadable.push(id),
            }
        }
        usage.uses.sort_by(|a, b| a.container.cmp(&b.container));
        usage.unreadable.sort();
        Ok(usage)
    }

    /// One container's use, from its whole record or else from its config alone.
    fn image_use(&self, id: &str) -> Record {
        if let Ok(mut c) = self.load(id) {
            let _ = c.settle();
            return Record::Uses(ImageUse {
                container: id.to_owned(),
                running: c.state.is_running(),
                manifest: c.config.image_manifest,
                image_id: Some(c.config.image_id),
                rootfs: Some(c.config.rootfs),
            });
        }
        let bytes = match fs::read(self.dir.join(id).join("config.json")) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Record::NoConfig,
            Err(_) => return Record::Unreadable,
        };
        let Ok(held) = serde_json::from_slice::<Held>(&bytes) else {
            return Record::Unreadable;
        };
        let manifest = held.image_manifest.as_deref().and_then(|d| Digest::parse(d).ok());
        if manifest.is_none() && held.image_id.is_none() {
            return Record::Unreadable;
        }
        Record::Uses(ImageUse {
            container: id.to_owned(),
            running: false,
            manifest,
            image_id: held.image_id,
            rootfs: held.rootfs,
        })
    }
}

/// What one container directory says about its image.
enum Record {
    Uses(ImageUse),
    /// No `config.json` yet: a create in progress or one that died half-way.
    NoConfig,
    /// A config that cannot be read, or that names no image.
    Unreadable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(configs: &[(&str, &str)]) -> (tempfile::TempDir, ContainerStore) {
        let root = tempfile::tempdir().unwrap();
        let store = ContainerStore::open(root.path()).unwrap();
        for (id, config) in configs {
            let dir = root.path().join("containers").join(id);
            fs::create_dir_all(&dir).unwrap();
            if !config.is_empty() {
                fs::write(dir.join("config.json"), config).unwrap();
            }
        }
        (root, store)
    }

    const MANIFEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const CONFIG: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn a_partial_record_still_names_its_image_and_disk() {
        let id = "a".repeat(64);
        let config = format!(r#"{{"image_manifest":"{MANIFEST}","rootfs":"/s/rootfs/x.erofs"}}"#);
        let (_root, store) = store_with(&[(&id, &config)]);
        let usage = store.usage().unwrap();
        assert!(usage.is_complete());
        let manifest = Digest::parse(MANIFEST).unwrap();
        let user = usage.user_of(&manifest, &Digest::parse(CONFIG).unwrap()).unwrap();
        assert_eq!(user.container, id);
        assert!(usage.uses_disk(Path::new("/other/rootfs/x.erofs")));
        assert!(!usage.uses_disk(Path::new("/s/rootfs/y.erofs")));
        assert_eq!(usage.manifests(), [manifest]);
    }

    #[test]
    fn a_record_without_a_manifest_is_matched_by_image_id() {
        let id = "b".repeat(64);
        let (_root, store) = store_with(&[(&id, &format!(r#"{{"image_id":"{CONFIG}"}}"#))]);
        let usage = store.usage().unwrap();
        let other = Digest::parse(MANIFEST).unwrap();
        assert!(usage.user_of(&other, &Digest::parse(CONFIG).unwrap()).is_some());
        assert!(usage.user_of(&other, &other).is_none());
    }

    #[test]
    fn an_unreadable_record_keeps_everything_and_a_half_created_one_nothing() {
        let (bad, half) = ("c".repeat(64), "d".repeat(64));
        let (_root, store) = store_with(&[(&bad, "{not json"), (&half, "")]);
        let usage = store.usage().unwrap();
        assert_eq!(usage.unreadable, [bad]);
        assert!(usage.uses.is_empty());
        let any = Digest::parse(MANIFEST).unwrap();
        assert!(usage.keeps(&any, &any));
    }
}
