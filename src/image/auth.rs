//! Registry credentials from Docker's `config.json` (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`). Credentials never appear in output or errors.

use std::path::{Path, PathBuf};

use base64::Engine as _;

pub mod helper;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: the auth entry for {registry} is not base64 of user:password")]
    Entry { path: PathBuf, registry: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a JSON object")]
    NotAnObject { path: PathBuf },
    #[error("neither DOCKER_CONFIG nor HOME is set: nowhere to keep credentials")]
    NoHome,
    #[error(transparent)]
    Helper(#[from] helper::HelperError),
}

/// Where Docker keeps its client config.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Looks up credentials for `registry` (`host[:port]`, `docker.io` for Docker Hub):
/// from its `credHelpers` entry, else the `credsStore` helper, else `auths`.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, AuthError> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let Some(bytes) = read_config(&path)? else {
        return Ok(None);
    };
    if let Some(helper) = helper_for(&bytes, &path, registry)? {
        return Ok(helper::get(&helper, &server_address(registry))?);
    }
    parse_config(&bytes, &path, registry)
}

fn read_config(path: &Path) -> Result<Option<Vec<u8>>, AuthError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuthError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_json(bytes: &[u8], path: &Path) -> Result<serde_json::Value, AuthError> {
    serde_json::from_slice(bytes).map_err(|source| AuthError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The credential helper (`docker-credential-NAME`) that keeps `registry`'s
/// credentials: its `credHelpers` entry, else `credsStore`.
fn helper_for(bytes: &[u8], path: &Path, registry: &str) -> Result<Option<String>, AuthError> {
    let config = parse_json(bytes, path)?;
    let keys = keys_for(registry);
    let per_registry = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| keys.contains(&normalise_key(k))))
        .and_then(|(_, v)| v.as_str());
    let store = config.get("credsStore").and_then(|s| s.as_str());
    Ok(per_registry.or(store).filter(|n| !n.is_empty()).map(str::to_owned))
}

/// The key Docker files `registry`'s credentials under.
pub fn server_address(registry: &str) -> String {
    if registry == "docker.io" {
        "https://index.docker.io/v1/".to_owned()
    } else {
        registry.to_owned()
    }
}

/// Where `login` keeps credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keeper {
    /// `auths` of this config.json.
    File(PathBuf),
    /// A `docker-credential-NAME` helper.
    Helper(String),
}

/// Stores `credentials` for `registry`: through its helper, else in `auths` (the
/// file rewritten atomically, mode 0600, its other keys kept).
pub fn store(registry: &str, credentials: &Credentials) -> Result<Keeper, AuthError> {
    let path = docker_config_path().ok_or(AuthError::NoHome)?;
    let bytes = read_config(&path)?;
    if let Some(helper) = bytes
        .as_deref()
        .map(|b| helper_for(b, &path, registry))
        .transpose()?
        .flatten()
    {
        helper::store(&helper, &server_address(registry), credentials)?;
        return Ok(Keeper::Helper(helper));
    }
    let mut config = match &bytes {
        Some(b) => parse_json(b, &path)?,
        None => serde_json::json!({}),
    };
    let object = config
        .as_object_mut()
        .ok_or_else(|| AuthError::NotAnObject { path: path.clone() })?;
    let auths = object.entry("auths").or_insert_with(|| serde_json::json!({}));
    if !auths.is_object() {
        *auths = serde_json::json!({});
    }
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| AuthError::NotAnObject { path: path.clone() })?;
    let keys = keys_for(registry);
    auths.retain(|k, _| !keys.contains(&normalise_key(k)));
    let raw = format!("{}:{}", credentials.username, credentials.password);
    let auth = base64::engine::general_purpose::STANDARD.encode(raw);
    auths.insert(server_address(registry), serde_json::json!({ "auth": auth }));
    write_config(&path, &config)?;
    Ok(Keeper::File(path))
}

/// Removes `registry`'s credentials; false when there were none.
pub fn erase(registry: &str) -> Result<bool, AuthError> {
    let Some(path) = docker_config_path() else {
        return Ok(false);
    };
    let Some(bytes) = read_config(&path)? else {
        return Ok(false);
    };
    let mut config = parse_json(&bytes, &path)?;
    let keys = keys_for(registry);
    let mut removed = false;
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        let before = auths.len();
        auths.retain(|k, _| !keys.contains(&normalise_key(k)));
        removed = auths.len() != before;
    }
    if let Some(helper) = helper_for(&bytes, &path, registry)? {
        removed |= helper::erase(&helper, &server_address(registry))?;
    }
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}

/// Writes config.json whole: a private temp file beside it, fsynced, renamed over.
fn write_config(path: &Path, config: &serde_json::Value) -> Result<(), AuthError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let write_err = |source| AuthError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(write_err)?;
    let mut text = serde_json::to_vec_pretty(config).map_err(|e| write_err(std::io::Error::other(e)))?;
    text.push(b'\n');
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

/// Credentials for `registry` in the bytes of a `config.json` read from `path` (which
/// errors name).
pub fn parse_config(bytes: &[u8], path: &Path, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let path = path.to_path_buf();
    let config: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| AuthError::Json {
        path: path.clone(),
        source,
    })?;
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let entry = auths
        .iter()
        .find(|(key, _)| keys_for(registry).iter().any(|k| k == &normalise_key(key)));
    let Some((key, entry)) = entry else { return Ok(None) };
    let bad = || AuthError::Entry {
        path: path.clone(),
        registry: key.clone(),
    };
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        }));
    }
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(match (field("username"), field("password")) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        _ => None,
    })
}

/// `https://host:port/v1/` and similar keys reduce to `host:port`.
fn normalise_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key).to_owned()
}

fn keys_for(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        ["index.docker.io", "docker.io", "registry-1.docker.io"]
            .map(str::to_owned)
            .to_vec()
    } else {
        vec![registry.to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised() {
        assert_eq!(normalise_key("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(normalise_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalise_key("http://localhost:5000"), "localhost:5000");
    }

    #[test]
    fn auth_entries_decode_and_bad_ones_name_the_registry_only() {
        let path = Path::new("/c/config.json");
        let config = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpwOmFzcw=="},"r:5000":{"auth":"!!"}}}"#;
        let creds = parse_config(config, path, "docker.io").unwrap().unwrap();
        assert_eq!((creds.username.as_str(), creds.password.as_str()), ("u", "p:ass"));
        let err = parse_config(config, path, "r:5000").unwrap_err().to_string();
        assert!(err.contains("r:5000") && !err.contains("!!"), "{err}");
        assert_eq!(parse_config(br#"{"auths":[]}"#, path, "docker.io").unwrap(), None);
    }

    proptest::proptest! {
        /// Entries written as Docker writes them are found; a failure never shows the secret.
        #[test]
        fn written_entries_are_found_and_errors_hide_secrets(user in "[^:]{0,12}", password in ".{0,24}", junk in ".{0,24}") {
            use base64::Engine as _;
            let path = Path::new("/c/config.json");
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let config = serde_json::json!({ "auths": { "reg:1": { "auth": auth }, "bad:1": { "auth": junk } } });
            let bytes = serde_json::to_vec(&config).unwrap();
            let found = parse_config(&bytes, path, "reg:1").unwrap().unwrap();
            proptest::prop_assert_eq!(found, Credentials { username: user, password: password.clone() });
            if let Err(e) = parse_config(&bytes, path, "bad:1") {
                proptest::prop_assert!(junk.len() < 4 || !e.to_string().contains(&junk));
            }
        }
    }

    #[test]
    fn debug_output_hides_password() {
        let c = Credentials {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }
}
