//! Pushing stored images to OCI distribution registries.
//!
//! oci-client runs the token handshake (as for pull); the requests themselves are
//! written here on reqwest. oci-client 0.18 has push, blob mount and chunked upload,
//! but reads every error body whole (`res.text()`), unwraps the `Location` a registry
//! sends (a panic on hostile input), fixes monolithic vs chunked per client and needs
//! a replayable source for retries; the store's byte-exact manifests it would push
//! fine (`push_manifest_raw`). Here every answer is read bounded and under a
//! deadline, locations are parsed as untrusted, and a failed blob starts over.
//!
//! Each blob is checked with HEAD first; one the registry lacks is mounted from
//! another repository of the same registry the store knows it from, else uploaded:
//! in one PUT up to the chunk size, as PATCHes of that size beyond. The manifest goes
//! last, as the exact bytes the store holds, so its digest is the local one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};

use super::auth::{self, AuthError, Credentials};
use super::digest::Digest;
use super::manifest::{self, Blob, Document, ManifestError};
use super::reference::Reference;
use super::registry::{is_insecure, reason_line};
use super::store::{ImageStore, StoreError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of a request that carries no blob (HEAD, POST, the final PUT).
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Tries per blob (and for the manifest) on 5xx answers and connection failures.
const ATTEMPTS: u32 = 3;
/// Blobs uploaded at once.
const PARALLEL_BLOBS: usize = 3;
/// Blobs up to this size go in one PUT; larger ones as PATCHes of this size.
pub const DEFAULT_CHUNK_BYTES: u64 = 64 << 20;
/// At most this much of an error answer is read, for its message.
const MAX_ERROR_BODY: usize = 8 << 10;
/// Bytes read from a stored blob at a time.
const READ_BUFFER: usize = 256 << 10;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("An image does not exist locally with the tag: {0}")]
    NoSuchImage(String),
    #[error("{0}: push needs a tag, not a digest")]
    NoTag(String),
    #[error("{reference}: authentication failed: {reason}")]
    Unauthorized { reference: String, reason: String },
    #[error("{reference}")]
    Registry {
        reference: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("{reference}: blob {digest}: {failure}")]
    Blob {
        reference: String,
        digest: Digest,
        failure: Failure,
    },
    #[error("{reference}: manifest: {failure}")]
    Manifest { reference: String, failure: Failure },
    #[error("{reference}: stored manifest")]
    StoredManifest {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("{reference}: the stored manifest is an index; hull pushes single-platform images")]
    Index { reference: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why one request to the registry did not do what it should.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("registry answered {status}{detail}")]
    Status { status: u16, detail: String },
    #[error("registry refused the credentials ({status}){detail}")]
    Denied { status: u16, detail: String },
    #[error("connection failed: {0}")]
    Connection(String),
    #[error("registry sent no usable upload location")]
    Location,
    #[error("cannot read the stored blob {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Failure {
    /// Worth another try: the registry's own trouble or the network's.
    fn is_transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => *status >= 500,
            Failure::Connection(_) => true,
            _ => false,
        }
    }
}

/// What a push is told about its layers, for progress display.
pub trait PushProgress: Send + Sync {
    fn layer_preparing(&self, _digest: &Digest) {}
    fn layer_exists(&self, _digest: &Digest) {}
    fn layer_mounted(&self, _digest: &Digest, _from: &str) {}
    fn layer_retrying(&self, _digest: &Digest, _failure: &Failure) {}
    fn layer_pushed(&self, _digest: &Digest) {}
}

/// No progress output.
pub struct Silent;
impl PushProgress for Silent {}

/// The result of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub tag: String,
    pub manifest: Blob,
}

/// A client for pushes to one registry.
pub struct Pusher {
    client: oci_client::Client,
    http: reqwest::Client,
    store: ImageStore,
    chunk_bytes: u64,
}

/// One push's target: where requests go and the header they carry.
struct Target {
    reference: String,
    /// `scheme://registry/v2/repository/`
    base: Url,
    authorization: Option<HeaderValue>,
}

impl Target {
    fn url(&self, path: &str) -> Result<Url, Failure> {
        self.base.join(path).map_err(|_| Failure::Location)
    }

    /// Credentials go to the registry itself, never to another host it points at.
    fn authorize(&self, request: reqwest::RequestBuilder, url: &Url) -> reqwest::RequestBuilder {
        let same_host =
            url.host_str() == self.base.host_str() && url.port_or_known_default() == self.base.port_or_known_default();
        match (&self.authorization, same_host) {
            (Some(h), true) => request.header(AUTHORIZATION, h.clone()),
            _ => request,
        }
    }
}

impl Pusher {
    pub fn new(store: ImageStore, registry: &str) -> Result<Pusher, PushError> {
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
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PushError::Manifest {
                reference: registry.to_owned(),
                failure: Failure::Connection(describe(&e)),
            })?;
        Ok(Pusher {
            client: oci_client::Client::new(config),
            http,
            store,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
        })
    }

    /// Blobs larger than `bytes` are uploaded in chunks of that size.
    pub fn with_chunk_bytes(mut self, bytes: u64) -> Pusher {
        self.chunk_bytes = bytes.max(1);
        self
    }

    /// Pushes the image the store tags `reference` to its registry.
    pub async fn push(&self, reference: &Reference, progress: Arc<dyn PushProgress>) -> Result<Pushed, PushError> {
        let shown = reference.familiar();
        let tag = reference
            .tag()
            .filter(|_| reference.digest().is_none())
            .ok_or_else(|| PushError::NoTag(shown.clone()))?
            .to_owned();
        let _pin = self.store.pin()?;
        let record = self
            .store
            .records()?
            .into_iter()
            .find(|r| r.name.as_deref() == Some(reference.to_string().as_str()))
            .ok_or_else(|| PushError::NoSuchImage(shown.clone()))?;
        let bytes = self
            .store
            .read_blob(&record.manifest.digest, manifest::MAX_MANIFEST_BYTES)?;
        let parsed =
            manifest::parse(&bytes, Some(&record.manifest.media_type)).map_err(|source| PushError::StoredManifest {
                reference: shown.clone(),
                source,
            })?;
        let Document::Manifest(image) = parsed else {
            return Err(PushError::Index { reference: shown });
        };
        let target = self.target(reference).await?;
        let sources = self.mount_sources(reference)?;
        let mut blobs = vec![(image.config.clone(), false)];
        let mut seen = std::collections::HashSet::from([image.config.digest.clone()]);
        for layer in &image.layers {
            if seen.insert(layer.blob.digest.clone()) {
                blobs.push((layer.blob.clone(), true));
            }
        }
        for (blob, is_layer) in &blobs {
            if *is_layer {
                progress.layer_preparing(&blob.digest);
            }
        }
        let results: Vec<Result<(), PushError>> = futures_util::stream::iter(&blobs)
            .map(|(blob, is_layer)| {
                let report: &dyn PushProgress = if *is_layer { progress.as_ref() } else { &Silent };
                self.push_blob(&target, blob, sources.get(&blob.digest), report)
            })
            .buffer_unordered(PARALLEL_BLOBS)
            .collect()
            .await;
        results.into_iter().collect::<Result<(), _>>()?;
        self.put_manifest(&target, &tag, &record.manifest.media_type, bytes)
            .await?;
        Ok(Pushed {
            tag,
            manifest: record.manifest,
        })
    }

    /// Runs the registry's auth handshake for pull and push of the repository.
    async fn target(&self, reference: &Reference) -> Result<Target, PushError> {
        let shown = reference.familiar();
        let oref = oci_client::Reference::with_tag(
            reference.registry().into(),
            reference.repository().into(),
            reference.tag().unwrap_or("latest").into(),
        );
        let credentials = auth::lookup(reference.registry())?;
        let auth = match &credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let token = self
            .client
            .auth(&oref, &auth, RegistryOperation::Push)
            .await
            .map_err(|e| match e {
                oci_client::errors::OciDistributionError::AuthenticationFailure(reason) => PushError::Unauthorized {
                    reference: shown.clone(),
                    reason: reason_line(&reason),
                },
                source => PushError::Registry {
                    reference: shown.clone(),
                    source,
                },
            })?;
        let scheme = if is_insecure(reference.registry()) {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{}/v2/{}/", oref.resolve_registry(), reference.repository());
        let base = Url::parse(&base).map_err(|_| PushError::Manifest {
            reference: shown.clone(),
            failure: Failure::Location,
        })?;
        Ok(Target {
            reference: shown,
            base,
            authorization: authorization(token, credentials.as_ref()),
        })
    }

    /// For each blob, another repository of the same registry the store has it from.
    fn mount_sources(&self, reference: &Reference) -> Result<HashMap<Digest, String>, PushError> {
        let mut sources = HashMap::new();
        for record in self.store.records()? {
            let Some(other) = record.reference() else { continue };
            if other.registry() != reference.registry() || other.repository() == reference.repository() {
                continue;
            }
            let Ok(blobs) = self.store.image_blobs(&record.manifest.digest) else {
                continue;
            };
            for digest in blobs {
                sources.entry(digest).or_insert_with(|| other.repository().to_owned());
            }
        }
        Ok(sources)
    }

    /// Makes sure the registry has one blob: there already, mounted, or uploaded.
    async fn push_blob(
        &self,
        target: &Target,
        blob: &Blob,
        source: Option<&String>,
        progress: &dyn PushProgress,
    ) -> Result<(), PushError> {
        let digest = &blob.digest;
        let fail = |failure| PushError::Blob {
            reference: target.reference.clone(),
            digest: digest.clone(),
            failure,
        };
        if self.blob_exists(target, digest).await.map_err(fail)? {
            progress.layer_exists(digest);
            return Ok(());
        }
        if let Some(from) = source {
            if self.mount(target, digest, from).await.map_err(fail)? {
                progress.layer_mounted(digest, from);
                return Ok(());
            }
        }
        let mut attempt = 1;
        loop {
            match self.upload(target, blob).await {
                Ok(()) => break,
                Err(f) if f.is_transient() && attempt < ATTEMPTS => {
                    tracing::debug!(
                        "{}: blob {digest}: attempt {attempt} failed, retrying: {f}",
                        target.reference
                    );
                    progress.layer_retrying(digest, &f);
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                    attempt += 1;
                }
                Err(f) => return Err(fail(f)),
            }
        }
        progress.layer_pushed(digest);
        Ok(())
    }

    async fn blob_exists(&self, target: &Target, digest: &Digest) -> Result<bool, Failure> {
        let url = target.url(&format!("blobs/{digest}"))?;
        let response = with_retries(|| self.send(target, self.http.head(url.clone()), &url)).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(failure_of(response).await),
        }
    }

    /// Asks the registry to link the blob from `from`; false where it would not.
    async fn mount(&self, target: &Target, digest: &Digest, from: &str) -> Result<bool, Failure> {
        let mut url = target.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let request = self.http.post(url.clone()).header(CONTENT_LENGTH, 0);
        let response = self.send(target, request, &url).await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            // An upload session instead (mount not allowed): left to expire.
            s if s.is_success() => Ok(false),
            s if s.is_client_error() => Ok(false),
            _ => Err(failure_of(response).await),
        }
    }

    /// One attempt at uploading a blob, from a new upload session.
    async fn upload(&self, target: &Target, blob: &Blob) -> Result<(), Failure> {
        let start = target.url("blobs/uploads/")?;
        let request = self.http.post(start.clone()).header(CONTENT_LENGTH, 0);
        let response = self.send(target, request, &start).await?;
        let mut location = expect_location(target, response, StatusCode::ACCEPTED).await?;
        let path = self.store.blob_path(&blob.digest);
        if blob.size > self.chunk_bytes {
            let mut offset = 0;
            while offset < blob.size {
                let len = self.chunk_bytes.min(blob.size - offset);
                let body = file_body(&path, offset, len).await?;
                let request = self
                    .http
                    .patch(location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, len)
                    .header(CONTENT_RANGE, format!("{offset}-{}", offset + len - 1))
                    .body(body);
                let response = self.send(target, request, &location).await?;
                location = expect_location(target, response, StatusCode::ACCEPTED).await?;
                offset += len;
            }
            location
                .query_pairs_mut()
                .append_pair("digest", &blob.digest.to_string());
            let request = self.http.put(location.clone()).header(CONTENT_LENGTH, 0);
            let response = self.send(target, request.timeout(REQUEST_DEADLINE), &location).await?;
            return expect_status(response, StatusCode::CREATED).await;
        }
        location
            .query_pairs_mut()
            .append_pair("digest", &blob.digest.to_string());
        let body = file_body(&path, 0, blob.size).await?;
        let request = self
            .http
            .put(location.clone())
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, blob.size)
            .body(body);
        let response = self.send(target, request, &location).await?;
        expect_status(response, StatusCode::CREATED).await
    }

    async fn put_manifest(
        &self,
        target: &Target,
        tag: &str,
        media_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), PushError> {
        let fail = |failure| PushError::Manifest {
            reference: target.reference.clone(),
            failure,
        };
        let url = target.url(&format!("manifests/{tag}")).map_err(fail)?;
        let response = with_retries(|| {
            let request = self
                .http
                .put(url.clone())
                .header(CONTENT_TYPE, media_type)
                .body(bytes.clone())
                .timeout(REQUEST_DEADLINE);
            self.send(target, request, &url)
        })
        .await
        .map_err(fail)?;
        expect_status(response, StatusCode::CREATED).await.map_err(fail)
    }

    /// Sends one request; a 5xx answer is returned as a transient failure.
    async fn send(
        &self,
        target: &Target,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::Response, Failure> {
        let response = target
            .authorize(request, url)
            .send()
            .await
            .map_err(|e| Failure::Connection(describe(&e)))?;
        if response.status().is_server_error() {
            return Err(failure_of(response).await);
        }
        Ok(response)
    }
}

/// Retries a small request (no blob body) on transient failures.
async fn with_retries<F, Fut>(mut send: F) -> Result<reqwest::Response, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Response, Failure>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Err(f) if f.is_transient() && attempt < ATTEMPTS => {
                tracing::debug!("attempt {attempt} failed, retrying: {f}");
                tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The Authorization header: the bearer token, else basic credentials, else none.
fn authorization(token: Option<String>, credentials: Option<&Credentials>) -> Option<HeaderValue> {
    let value = match (token, credentials) {
        (Some(token), _) => format!("Bearer {token}"),
        (None, Some(c)) => {
            use base64::Engine as _;
            let raw = format!("{}:{}", c.username, c.password);
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
        }
        (None, None) => return None,
    };
    let mut header = HeaderValue::from_str(&value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

async fn expect_status(response: reqwest::Response, want: StatusCode) -> Result<(), Failure> {
    if response.status() == want || response.status().is_success() {
        return Ok(());
    }
    Err(failure_of(response).await)
}

/// The upload location a registry answers with, resolved against the request's URL.
async fn expect_location(target: &Target, response: reqwest::Response, want: StatusCode) -> Result<Url, Failure> {
    if response.status() != want {
        return Err(failure_of(response).await);
    }
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(Failure::Location)?;
    let url = target.base.join(location).map_err(|_| Failure::Location)?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        _ => Err(Failure::Location),
    }
}

/// A failed answer as one line: its status and the registry's first error message.
async fn failure_of(response: reqwest::Response) -> Failure {
    let status = response.status().as_u16();
    let body = read_bounded(response).await;
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.pointer("/errors/0")?;
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some(format!("{code} {message}"))
        })
        .map(|m| reason_line(m.trim()))
        .filter(|m| !m.is_empty());
    let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
    if status == 401 || status == 403 {
        Failure::Denied { status, detail }
    } else {
        Failure::Status { status, detail }
    }
}

/// At most [`MAX_ERROR_BODY`] bytes of an answer, within the request deadline.
async fn read_bounded(response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    let read = async {
        while let Some(Ok(chunk)) = stream.next().await {
            let room = MAX_ERROR_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= MAX_ERROR_BODY {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(REQUEST_DEADLINE, read).await;
    body
}

/// `len` bytes of the stored blob at `path` from `offset`, streamed.
async fn file_body(path: &std::path::Path, offset: u64, len: u64) -> Result<reqwest::Body, Failure> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let read_err = |source| Failure::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
    file.seek(std::io::SeekFrom::Start(offset)).await.map_err(read_err)?;
    let stream = futures_util::stream::unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; READ_BUFFER.min(left as usize)];
        match file.read(&mut buf).await {
            Ok(0) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "stored blob is shorter than its size",
                )),
                (file, 0),
            )),
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), (file, left - n as u64)))
            }
            Err(e) => Some((Err(e), (file, 0))),
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// A reqwest error as one line, without its URL, with its causes.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&reason_line(&s.to_string()));
        source = s.source();
    }
    text
}
