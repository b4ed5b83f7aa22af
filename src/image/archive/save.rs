//! `save`: images from the store out as one tarball that is both a `docker save`
//! archive and an OCI image layout (the Docker 25+ shape):
//!
//! ```text
//! blobs/sha256/<hex>   uncompressed layer tars (digest = diff_id), configs, manifests
//! index.json           one entry per tag (io.containerd.image.name + ref.name)
//! manifest.json        [{Config, RepoTags, Layers}] for docker load
//! oci-layout
//! ```
//!
//! Compressed layers are decompressed through a temp file in the store (a tar header
//! needs the size first); every layer is hashed as it is written and must match its
//! diff_id.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::stage::TempFile;
use super::{blob_member, ArchiveError, Result, IMAGE_NAME};
use crate::image::digest::Digest;
use crate::image::manifest::{
    Compression, Layer, MAX_CONFIG_BYTES, OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST,
};
use crate::image::reference::Reference;
use crate::image::store::{fs, Image, ImageStore, REF_NAME};

/// An image to save and the tags it is saved under.
struct SavedImage {
    image: Image,
    tags: Vec<Reference>,
}

/// Where the archive goes, for error messages.
struct Sink<'a, W: Write> {
    tar: tar::Builder<W>,
    name: &'a Path,
    /// Members written so far, with their sizes.
    written: HashMap<String, u64>,
}

/// Writes the archive of `queries` (references or image ids) to `path`, atomically:
/// a temp file beside it is renamed over it only once the archive is complete.
pub fn save_to_file(store: &ImageStore, queries: &[String], path: &Path) -> Result<()> {
    let _pin = store.pin()?;
    let images = resolve(store, queries)?;
    let mut out = AtomicFile::create(path)?;
    write_archive(store, &images, &mut out.file, path)?;
    out.commit()
}

/// Writes the archive of `queries` to `out` (standard output, usually).
pub fn save(store: &ImageStore, queries: &[String], out: impl Write) -> Result<()> {
    let _pin = store.pin()?;
    let images = resolve(store, queries)?;
    write_archive(store, &images, out, Path::new("standard output"))
}

/// Finds every image before anything is written; a query naming a tag saves that tag.
fn resolve(store: &ImageStore, queries: &[String]) -> Result<Vec<SavedImage>> {
    let mut saved: Vec<SavedImage> = Vec::new();
    for query in queries {
        let image = store.find(query).map_err(|source| ArchiveError::Store {
            image: query.clone(),
            source,
        })?;
        let tag = Reference::parse(query)
            .ok()
            .filter(|r| r.tag().is_some() && image.tags.contains(r));
        match saved
            .iter_mut()
            .find(|s| s.image.manifest_digest == image.manifest_digest)
        {
            Some(s) => s.tags.extend(tag.filter(|t| !s.tags.contains(t))),
            None => saved.push(SavedImage {
                image,
                tags: tag.into_iter().collect(),
            }),
        }
    }
    Ok(saved)
}

fn write_archive(store: &ImageStore, images: &[SavedImage], out: impl Write, name: &Path) -> Result<()> {
    let mut sink = Sink {
        tar: tar::Builder::new(out),
        name,
        written: HashMap::new(),
    };
    sink.dir("blobs/")?;
    sink.dir("blobs/sha256/")?;
    let mut docker_entries = Vec::new();
    let mut index_entries = Vec::new();
    for saved in images {
        let (docker, index) = write_image(store, &mut sink, saved)?;
        docker_entries.push(docker);
        index_entries.extend(index);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries });
    sink.file("index.json", &to_json(&index))?;
    sink.file("manifest.json", &to_json(&Value::Array(docker_entries)))?;
    sink.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut out = sink.tar.into_inner().map_err(write_err(name))?;
    out.flush().map_err(write_err(name))
}

/// Writes one image's blobs; returns its `manifest.json` entry and `index.json` entries.
fn write_image<W: Write>(
    store: &ImageStore,
    sink: &mut Sink<'_, W>,
    saved: &SavedImage,
) -> Result<(Value, Vec<Value>)> {
    let image = &saved.image;
    let label = saved
        .tags
        .first()
        .map_or_else(|| image.config_digest.to_string(), Reference::familiar);
    let diff_ids = diff_ids(image, &label)?;
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (layer, diff_id) in image.manifest.layers.iter().zip(&diff_ids) {
        let size = write_layer(store, sink, layer, diff_id, &label)?;
        layers.push(json!({ "mediaType": OCI_LAYER_TAR, "digest": diff_id, "size": size }));
    }
    let config = store
        .read_blob(&image.config_digest, MAX_CONFIG_BYTES)
        .map_err(|source| ArchiveError::Store {
            image: label.clone(),
            source,
        })?;
    sink.blob(&config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": OCI_CONFIG, "digest": image.config_digest, "size": config.len() },
        "layers": layers,
    });
    let manifest = to_json(&manifest);
    let manifest_digest = sink.blob(&manifest)?;
    let repo_tags: Vec<String> = saved.tags.iter().map(Reference::familiar).collect();
    let docker = json!({
        "Config": blob_member(&image.config_digest),
        "RepoTags": if repo_tags.is_empty() { Value::Null } else { json!(repo_tags) },
        "Layers": diff_ids.iter().map(blob_member).collect::<Vec<_>>(),
    });
    let descriptor = json!({ "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len() });
    Ok((docker, index_entries(descriptor, &saved.tags)))
}

fn index_entries(descriptor: Value, tags: &[Reference]) -> Vec<Value> {
    if tags.is_empty() {
        return vec![descriptor];
    }
    tags.iter()
        .map(|tag| {
            let mut entry = descriptor.clone();
            entry["annotations"] = json!({ IMAGE_NAME: tag.to_string(), REF_NAME: tag.tag().unwrap_or("latest") });
            entry
        })
        .collect()
}

fn diff_ids(image: &Image, label: &str) -> Result<Vec<Digest>> {
    let ids = image
        .diff_ids()
        .iter()
        .map(|d| {
            Digest::parse(d).map_err(|source| ArchiveError::DiffIdFormat {
                image: label.to_owned(),
                source,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if ids.len() != image.manifest.layers.len() {
        let layers = image.manifest.layers.len();
        return Err(ArchiveError::LayerCount {
            image: label.to_owned(),
            layers,
            diff_ids: ids.len(),
        });
    }
    Ok(ids)
}

/// Writes a layer uncompressed as `blobs/sha256/<diff_id>`; returns its size.
fn write_layer<W: Write>(
    store: &ImageStore,
    sink: &mut Sink<'_, W>,
    layer: &Layer,
    diff_id: &Digest,
    label: &str,
) -> Result<u64> {
    let member = blob_member(diff_id);
    if let Some(size) = sink.written.get(&member) {
        return Ok(*size);
    }
    let path = store.blob_path(&layer.blob.digest);
    let file = File::open(&path).map_err(|source| ArchiveError::Io {
        op: "open",
        path: path.clone(),
        source,
    })?;
    let (reader, size): (Box<dyn Read>, u64) = match layer.compression {
        Compression::None => (Box::new(file), layer.blob.size),
        compression => {
            let (temp, size) = decompress(store, file, compression, &path)?;
            (Box::new(temp), size)
        }
    };
    let actual = sink.exact(&member, size, reader, &path)?;
    if &actual != diff_id {
        return Err(ArchiveError::CorruptBlob {
            image: label.to_owned(),
            digest: layer.blob.digest.clone(),
            actual,
        });
    }
    Ok(size)
}

/// Decompresses a layer blob into a temp file; returns it rewound, and its size.
fn decompress(store: &ImageStore, file: File, compression: Compression, path: &Path) -> Result<(TempFileReader, u64)> {
    let read_err = |source| ArchiveError::Io {
        op: "decompress",
        path: path.to_owned(),
        source,
    };
    let mut temp = TempFile::create(store)?;
    let mut decoder: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
        _ => Box::new(zstd::stream::read::Decoder::new(file).map_err(read_err)?),
    };
    let mut out = BufWriter::new(&mut temp.file);
    let size = io::copy(&mut decoder, &mut out).map_err(read_err)?;
    out.flush().map_err(read_err)?;
    drop(out);
    temp.file.rewind().map_err(read_err)?;
    Ok((TempFileReader(temp), size))
}

/// Reads a temp file, which is removed once the reader is dropped.
struct TempFileReader(TempFile);

impl Read for TempFileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.file.read(buf)
    }
}

impl<W: Write> Sink<'_, W> {
    fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(0);
        header
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        let mut header = Self::header(0, tar::EntryType::Directory, 0o755);
        self.tar
            .append_data(&mut header, path, io::empty())
            .map_err(write_err(self.name))
    }

    fn file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let mut header = Self::header(bytes.len() as u64, tar::EntryType::Regular, 0o644);
        self.tar
            .append_data(&mut header, path, bytes)
            .map_err(write_err(self.name))
    }

    /// Writes small content as a blob, once; returns its digest.
    fn blob(&mut self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let member = blob_member(&digest);
        if !self.written.contains_key(&member) {
            self.file(&member, bytes)?;
            self.written.insert(member, bytes.len() as u64);
        }
        Ok(digest)
    }

    /// Writes exactly `size` bytes from `reader` and returns their digest; fewer bytes
    /// (a blob shrunk or truncated) is an error, more are never read.
    fn exact(&mut self, member: &str, size: u64, reader: impl Read, source_path: &Path) -> Result<Digest> {
        let mut counted = Hashing {
            inner: reader.take(size),
            hasher: Sha256::new(),
            count: 0,
        };
        let mut header = Self::header(size, tar::EntryType::Regular, 0o644);
        self.tar
            .append_data(&mut header, member, &mut counted)
            .map_err(write_err(self.name))?;
        if counted.count != size {
            let source = io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} of {size} bytes", counted.count),
            );
            return Err(ArchiveError::Io {
                op: "read",
                path: source_path.to_owned(),
                source,
            });
        }
        self.written.insert(member.to_owned(), size);
        Ok(Digest::from_hasher(counted.hasher))
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn to_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON values serialise")
}

fn write_err(name: &Path) -> impl Fn(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        op: "write",
        path: name.to_owned(),
        source,
    }
}

/// The output file, written under a temp name beside it and renamed when complete.
/// A file written under a temporary name beside its destination and renamed onto it
/// only when complete: a failed write leaves nothing under the final name.
pub struct AtomicFile {
    pub file: BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|source| ArchiveError::Io {
                op: "create",
                path: tmp.clone(),
                source,
            })?;
        let file = BufWriter::with_capacity(256 * 1024, file);
        Ok(AtomicFile {
            file,
            tmp,
            dest: dest.to_owned(),
            committed: false,
        })
    }

    pub fn commit(mut self) -> Result<()> {
        let err = |op, path: &Path| {
            let path = path.to_owned();
            move |source| ArchiveError::Io { op, path, source }
        };
        self.file.flush().map_err(err("write", &self.tmp))?;
        self.file.get_ref().sync_all().map_err(err("sync", &self.tmp))?;
        fs::publish(&self.tmp, &self.dest).map_err(err("rename onto", &self.dest))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
