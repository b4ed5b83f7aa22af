//! Pulling images from OCI distribution registries.
//!
//! oci-client does the token handshake (anonymous, basic, bearer) and streams blobs;
//! manifests are fetched with the same credentials through a bounded read, since a
//! hostile registry may send an endless body. Every blob is hashed and counted while it
//! streams to a temp file and only published under its digest once both match.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use super::auth::{self, AuthError, Credentials};
use super::digest::Digest;
use super::manifest::{self, Blob, Document, Layer, Manifest, ManifestError, Platform};
use super::reference::Reference;
use super::store::{ImageStore, StoreError};

/// Layers downloaded at once.
const PARALLEL_LAYERS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Tries per blob when the connection fails mid-way.
const DOWNLOAD_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{reference}: authentication failed: {reason}")]
    Unauthorized { reference: String, reason: String },
    #[error("{reference}")]
    Registry {
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("{url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{reference}: manifest unknown (registry answered {status})")]
    NotFound { reference: String, status: u16 },
    #[error("{url}: registry answered {status}")]
    Status { url: String, status: u16 },
    #[error("{reference}")]
    Manifest {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("{reference}: manifest digest is {actual}, expected {expected}")]
    ManifestDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{reference}: no matching manifest for {wanted} in the manifest list; platforms available: {available}")]
    Platform {
        reference: String,
        wanted: String,
        available: String,
    },
    #[error("{reference}: index entry {digest} is itself an index")]
    NestedIndex { reference: String, digest: Digest },
    #[error("{reference}: image config lists {diff_ids} diff_ids but the manifest has {layers} layers")]
    LayerCount {
        reference: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("blob {digest}: registry sent more than the {size} bytes its descriptor declares")]
    BlobTooLong { digest: Digest, size: u64 },
    #[error("blob {digest}")]
    Blob {
        digest: Digest,
        #[source]
        source: StoreError,
    },
    #[error("blob {digest}: download failed")]
    Download {
        digest: Digest,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl PullError {
    /// Network failures worth another try; bad content never is.
    fn is_transient(&self) -> bool {
        use oci_client::errors::OciDistributionError as E;
        match self {
            PullError::Download { .. } => true,
            PullError::Registry {
                source: E::RequestError(_) | E::IoError(_),
                ..
            } => true,
            PullError::Registry {
                source: E::ServerError { code, .. },
                ..
            } => *code >= 500,
            _ => false,
        }
    }
}

fn is_verification_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<oci_client::errors::DigestError>().is_some())
}

/// What a pull is told about its layers, for progress display.
pub trait PullProgress: Send + Sync {
    fn resolved(&self, _reference: &Reference) {}
    fn layer_exists(&self, _digest: &Digest) {}
    fn layer_waiting(&self, _digest: &Digest, _size: u64) {}
    fn layer_bytes(&self, _digest: &Digest, _n: u64) {}
    fn layer_verifying(&self, _digest: &Digest) {}
    fn layer_done(&self, _digest: &Digest) {}
}

/// No progress output.
pub struct Silent;
impl PullProgress for Silent {}

/// The result of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Blob,
    /// The digest the registry knows the image by (the index's, for multi-platform images).
    pub repo_digest: Digest,
    /// Whether the tag now names a different image than before.
    pub updated: bool,
}

/// A client for one registry pull.
pub struct Puller {
    client: oci_client::Client,
    http: reqwest::Client,
    store: ImageStore,
    platform: Platform,
}

/// Whether a registry is spoken to over plain HTTP: loopback addresses (as Docker
/// treats them) and those listed in `HULL_INSECURE_REGISTRIES`.
pub fn is_insecure(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            registry
        }
    });
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || std::env::var("HULL_INSECURE_REGISTRIES")
            .unwrap_or_default()
            .split(',')
            .any(|r| !r.is_empty() && r.trim() == registry)
}

fn oci_reference(r: &Reference) -> oci_client::Reference {
    match (r.tag(), r.digest()) {
        (_, Some(d)) => oci_client::Reference::with_digest(r.registry().into(), r.repository().into(), d.to_string()),
        (Some(t), None) => oci_client::Reference::with_tag(r.registry().into(), r.repository().into(), t.into()),
        (None, None) => oci_client::Reference::with_tag(r.registry().into(), r.repository().into(), "latest".into()),
    }
}

impl Puller {
    pub fn new(store: ImageStore, registry: &str, platform: Platform) -> Result<Puller, PullError> {
        let protocol = if is_insecure(registry) {
            ClientProtocol::HttpsExcept(vec![registry.to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..Default::default()
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|source| PullError::Http {
                url: registry.to_owned(),
                source,
            })?;
        Ok(Puller {
            client: oci_client::Client::new(config),
            http,
            store,
            platform,
        })
    }

    /// Pulls `reference` into the store and tags it.
    pub async fn pull(&self, reference: &Reference, progress: Arc<dyn PullProgress>) -> Result<Pulled, PullError> {
        let _pin = self.store.pin()?;
        let oref = oci_reference(reference);
        let credentials = auth::lookup(reference.registry())?;
        let header = self.authorize(reference, &oref, credentials.as_ref()).await?;
        progress.resolved(reference);

        let (bytes, repo_digest, document) = self
            .fetch_manifest(reference, &oref, &header, reference.digest())
            .await?;
        let (manifest_bytes, manifest_digest, manifest) = match document {
            Document::Manifest(m) => (bytes, repo_digest.clone(), m),
            Document::Index { entries, .. } => {
                let entry =
                    manifest::select_platform(&entries, &self.platform).map_err(|available| PullError::Platform {
                        reference: reference.to_string(),
                        wanted: self.platform.to_string(),
                        available: if available.is_empty() {
                            "none".into()
                        } else {
                            available.join(", ")
                        },
                    })?;
                let digest = entry.blob.digest.clone();
                let child = oref.clone_with_digest(digest.to_string());
                match self.fetch_manifest(reference, &child, &header, Some(&digest)).await? {
                    (b, d, Document::Manifest(m)) => (b, d, m),
                    (_, d, Document::Index { .. }) => {
                        return Err(PullError::NestedIndex {
                            reference: reference.to_string(),
                            digest: d,
                        })
                    }
                }
            }
        };

        self.fetch_blob(&oref, &manifest.config, None, progress.as_ref())
            .await?;
        self.check_config(reference, &manifest)?;
        self.fetch_layers(&oref, &manifest, &progress).await?;
        // Docker-format manifests are stored as OCI manifests of the same blobs; the
        // registry's digest stays the image's repo digest.
        let (manifest, manifest_bytes, manifest_digest) = if manifest.media_type == manifest::DOCKER_MANIFEST {
            let (oci, bytes) = manifest::to_oci(&manifest);
            let digest = Digest::of(&bytes);
            (oci, bytes, digest)
        } else {
            (manifest, manifest_bytes, manifest_digest)
        };
        self.store.put_blob(&manifest_bytes)?;
        let blob = Blob {
            media_type: manifest.media_type.clone(),
            digest: manifest_digest,
            size: manifest_bytes.len() as u64,
        };
        let before = self
            .store
            .records()?
            .into_iter()
            .find(|r| r.name.as_deref() == Some(&reference.to_string()));
        let updated = before.is_none_or(|r| r.manifest.digest != blob.digest);
        self.store.tag(reference, &blob, Some(&repo_digest))?;
        Ok(Pulled {
            manifest: blob,
            repo_digest,
            updated,
        })
    }

    /// The config must be JSON naming one diff_id per layer, or no disk can be built.
    fn check_config(&self, reference: &Reference, manifest: &Manifest) -> Result<(), PullError> {
        let digest = &manifest.config.digest;
        let bytes = self.store.read_blob(digest, manifest::MAX_CONFIG_BYTES)?;
        let config: serde_json::Value = serde_json::from_slice(&bytes).map_err(|source| StoreError::Config {
            digest: digest.clone(),
            source,
        })?;
        let diff_ids = config
            .pointer("/rootfs/diff_ids")
            .and_then(|d| d.as_array())
            .map_or(0, Vec::len);
        if diff_ids != manifest.layers.len() {
            return Err(PullError::LayerCount {
                reference: reference.to_string(),
                diff_ids,
                layers: manifest.layers.len(),
            });
        }
        Ok(())
    }

    /// Runs the registry's auth handshake; returns the header for manifest requests.
    async fn authorize(
        &self,
        reference: &Reference,
        oref: &oci_client::Reference,
        credentials: Option<&Credentials>,
    ) -> Result<Option<String>, PullError> {
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let token = self
            .client
            .auth(oref, &auth, RegistryOperation::Pull)
            .await
            .map_err(|e| match e {
                oci_client::errors::OciDistributionError::AuthenticationFailure(reason) => PullError::Unauthorized {
                    reference: reference.to_string(),
                    reason: reason_line(&reason),
                },
                source => PullError::Registry {
                    reference: reference.to_string(),
                    source,
                },
            })?;
        Ok(match (token, credentials) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(c)) => {
                use base64::Engine as _;
                let raw = format!("{}:{}", c.username, c.password);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
            (None, None) => None,
        })
    }

    /// GETs a manifest, reading at most the manifest size limit, and checks its digest.
    async fn fetch_manifest(
        &self,
        reference: &Reference,
        oref: &oci_client::Reference,
        auth_header: &Option<String>,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest, Document), PullError> {
        let scheme = if is_insecure(reference.registry()) {
            "http"
        } else {
            "https"
        };
        let target = oref.digest().or(oref.tag()).unwrap_or("latest");
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{target}",
            oref.resolve_registry(),
            oref.repository()
        );
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, manifest::ACCEPTED.join(", "));
        if let Some(h) = auth_header {
            request = request.header(reqwest::header::AUTHORIZATION, h);
        }
        let http_err = |source: reqwest::Error| PullError::Http {
            url: url.clone(),
            source: source.without_url(),
        };
        let response = request.send().await.map_err(http_err)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(PullError::NotFound {
                reference: reference.to_string(),
                status: status.as_u16(),
            });
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(PullError::Unauthorized {
                reference: reference.to_string(),
                reason: format!("registry answered {status}"),
            });
        }
        if !status.is_success() {
            return Err(PullError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let manifest_err = |source| PullError::Manifest {
            reference: reference.to_string(),
            source,
        };
        if let Some(len) = response.content_length().filter(|l| *l > manifest::MAX_MANIFEST_BYTES) {
            return Err(manifest_err(ManifestError::TooLarge { size: len }));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(http_err)?;
            body.extend_from_slice(&chunk);
            if body.len() as u64 > manifest::MAX_MANIFEST_BYTES {
                return Err(manifest_err(ManifestError::TooLarge {
                    size: body.len() as u64,
                }));
            }
        }
        let actual = Digest::of(&body);
        if let Some(expected) = expected.filter(|e| *e != &actual) {
            return Err(PullError::ManifestDigest {
                reference: reference.to_string(),
                expected: expected.clone(),
                actual,
            });
        }
        let document = manifest::parse(&body, content_type.as_deref()).map_err(manifest_err)?;
        Ok((body, actual, document))
    }

    async fn fetch_layers(
        &self,
        oref: &oci_client::Reference,
        manifest: &Manifest,
        progress: &Arc<dyn PullProgress>,
    ) -> Result<(), PullError> {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&Layer> = manifest
            .layers
            .iter()
            .filter(|l| seen.insert(l.blob.digest.clone()))
            .collect();
        for layer in &unique {
            progress.layer_waiting(&layer.blob.digest, layer.blob.size);
        }
        let results: Vec<Result<(), PullError>> = futures_util::stream::iter(unique)
            .map(|layer| self.fetch_blob(oref, &layer.blob, Some(layer), progress.as_ref()))
            .buffer_unordered(PARALLEL_LAYERS)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Downloads one blob unless the store has it. The per-blob lock makes concurrent
    /// pulls of the same blob wait for the first instead of downloading it again.
    async fn fetch_blob(
        &self,
        oref: &oci_client::Reference,
        blob: &Blob,
        layer: Option<&Layer>,
        progress: &dyn PullProgress,
    ) -> Result<(), PullError> {
        let digest = &blob.digest;
        if self.store.has_blob(digest) {
            if layer.is_some() {
                progress.layer_exists(digest);
            }
            return Ok(());
        }
        let store = self.store.clone();
        let d = digest.clone();
        let _lock = tokio::task::spawn_blocking(move || store.lock_blob(&d)).await??;
        if self.store.has_blob(digest) {
            if layer.is_some() {
                progress.layer_exists(digest);
            }
            return Ok(());
        }
        if layer.is_none() && blob.size > manifest::MAX_CONFIG_BYTES {
            return Err(PullError::Blob {
                digest: digest.clone(),
                source: StoreError::BlobTooLarge {
                    digest: digest.clone(),
                    size: blob.size,
                    limit: manifest::MAX_CONFIG_BYTES,
                },
            });
        }
        let mut attempt = 1;
        loop {
            match self.download(oref, blob, layer.is_some(), progress).await {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < DOWNLOAD_ATTEMPTS => {
                    tracing::warn!("blob {digest}: attempt {attempt} failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if layer.is_some() {
            progress.layer_done(digest);
        }
        Ok(())
    }

    /// One attempt at streaming a blob into the store, verified before it is published.
    async fn download(
        &self,
        oref: &oci_client::Reference,
        blob: &Blob,
        is_layer: bool,
        progress: &dyn PullProgress,
    ) -> Result<(), PullError> {
        let digest = &blob.digest;
        let descriptor = OciDescriptor {
            media_type: blob.media_type.clone(),
            digest: digest.to_string(),
            size: blob.size as i64,
            ..Default::default()
        };
        let sized = self
            .client
            .pull_blob_stream(oref, &descriptor)
            .await
            .map_err(|source| PullError::Registry {
                reference: format!("blob {digest}"),
                source,
            })?;
        if sized.content_length.is_some_and(|len| len > blob.size) {
            return Err(PullError::BlobTooLong {
                digest: digest.clone(),
                size: blob.size,
            });
        }
        let mut writer = self.store.blob_writer()?;
        let mut stream = sized.stream;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                // oci-client's own digest check fires at the end of the stream; the
                // store's check below reports the mismatch with both digests.
                Err(e) if is_verification_error(&e) => break,
                Err(source) => {
                    return Err(PullError::Download {
                        digest: digest.clone(),
                        source,
                    })
                }
            };
            if writer.written() + chunk.len() as u64 > blob.size {
                return Err(PullError::BlobTooLong {
                    digest: digest.clone(),
                    size: blob.size,
                });
            }
            std::io::Write::write_all(&mut writer, &chunk).map_err(|source| PullError::Blob {
                digest: digest.clone(),
                source: StoreError::Io {
                    op: "write",
                    path: self.store.tmp_dir(),
                    source,
                },
            })?;
            if is_layer {
                progress.layer_bytes(digest, chunk.len() as u64);
            }
        }
        if is_layer {
            progress.layer_verifying(digest);
        }
        let (d, size) = (digest.clone(), blob.size);
        tokio::task::spawn_blocking(move || writer.commit(&d, Some(size)))
            .await?
            .map_err(|source| PullError::Blob {
                digest: digest.clone(),
                source,
            })?;
        Ok(())
    }
}

/// The registry's reason for refusing, as printed: its first line, without control
/// characters (no escape sequences reach the terminal), at most 200 characters.
pub(crate) fn reason_line(reason: &str) -> String {
    let first = reason.lines().next().unwrap_or("");
    first.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::reason_line;

    #[test]
    fn a_registry_reason_is_one_printable_line() {
        assert_eq!(
            reason_line("denied: \u{1b}]0;owned\u{7}bad \u{9b}2Jtoken\r\nsecond line"),
            "denied: ]0;ownedbad 2Jtoken"
        );
        assert_eq!(reason_line(&"x".repeat(500)).len(), 200);
        assert_eq!(reason_line(""), "");
    }
}
