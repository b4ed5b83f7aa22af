//! `--cidfile FILE`: the new container's full id written to FILE, as Docker writes
//! it. FILE must not exist; it is made at once (so two creates cannot share it) and
//! removed again when the create fails.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CidFileError {
    #[error("Container ID file found, make sure the other container isn't running or delete {}", .0.display())]
    Exists(PathBuf),
    #[error("failed to create the container ID file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write the container ID to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A claimed cidfile; removed on drop unless the id was written.
#[derive(Debug)]
pub struct CidFile {
    path: PathBuf,
    file: Option<File>,
}

impl CidFile {
    /// Claims `path`, which must not exist.
    pub fn claim(path: &Path) -> Result<CidFile, CidFileError> {
        if path.exists() {
            return Err(CidFileError::Exists(path.to_owned()));
        }
        let file = File::create_new(path).map_err(|source| match source.kind() {
            io::ErrorKind::AlreadyExists => CidFileError::Exists(path.to_owned()),
            _ => CidFileError::Create {
                path: path.to_owned(),
                source,
            },
        })?;
        Ok(CidFile {
            path: path.to_owned(),
            file: Some(file),
        })
    }

    /// Writes `id` (no newline, as Docker writes it) and keeps the file.
    pub fn write(mut self, id: &str) -> Result<(), CidFileError> {
        let mut file = self.file.take().expect("written once");
        let written = file.write_all(id.as_bytes()).and_then(|()| file.sync_all());
        written.map_err(|source| CidFileError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for CidFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_kept_only_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cid");
        drop(CidFile::claim(&path).unwrap());
        assert!(!path.exists(), "an unwritten claim is removed");
        CidFile::claim(&path).unwrap().write("abc").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc");
        assert!(matches!(CidFile::claim(&path), Err(CidFileError::Exists(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc", "left alone");
    }
}
