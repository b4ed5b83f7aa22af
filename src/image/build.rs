//! Images made locally: `commit` (a container's writable layer on top of its
//! image) and `import` (a tar as a one-layer image).
//!
//! New layers are stored as uncompressed tars, so a layer's digest is its diff_id and
//! a commit costs one pass over the bytes. The manifest is OCI, its base layers named
//! by the same blobs as the base image's. `-c` changes use Dockerfile syntax for the
//! instructions that only touch the config.

use std::io::{self, Read, Write};

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::digest::Digest;
use super::manifest::{self, Blob, Compression, Layer, Manifest, OCI_CONFIG, OCI_LAYER_TAR, OCI_MANIFEST};
use super::reference::Reference;
use super::store::{BlobWriter, ImageStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error("the image config is not a JSON object")]
    Config,
}

/// Streams an uncompressed layer tar into the store; returns its descriptor (whose
/// digest is also the layer's diff_id). Nothing is published if `source` fails.
pub fn write_layer(store: &ImageStore, mut source: impl Read) -> Result<Layer, io::Error> {
    let mut writer = store.blob_writer().map_err(io::Error::other)?;
    io::copy(&mut source, &mut writer)?;
    publish_layer(writer)
}

/// Publishes a complete uncompressed layer tar written to `writer`.
pub fn publish_layer(mut writer: BlobWriter) -> Result<Layer, io::Error> {
    writer.flush()?;
    let (digest, size) = writer.commit_computed().map_err(io::Error::other)?;
    Ok(Layer {
        blob: Blob {
            media_type: OCI_LAYER_TAR.to_owned(),
            digest,
            size,
        },
        compression: Compression::None,
    })
}

/// Writes `config` and a manifest of `layers`, then tags it (or records it
/// untagged). Returns the image id (the config digest).
pub fn write_image(
    store: &ImageStore,
    config: &Value,
    layers: Vec<Layer>,
    reference: Option<&Reference>,
) -> Result<Digest, BuildError> {
    let bytes = serde_json::to_vec(config).map_err(|_| BuildError::Config)?;
    let config_digest = store.put_blob(&bytes)?;
    let m = Manifest {
        media_type: OCI_MANIFEST.to_owned(),
        config: Blob {
            media_type: OCI_CONFIG.to_owned(),
            digest: config_digest.clone(),
            size: bytes.len() as u64,
        },
        layers,
    };
    let (_, manifest_bytes) = manifest::to_oci(&m);
    let manifest_blob = Blob {
        media_type: OCI_MANIFEST.to_owned(),
        digest: store.put_blob(&manifest_bytes)?,
        size: manifest_bytes.len() as u64,
    };
    match reference {
        Some(r) => store.tag(r, &manifest_blob, None)?,
        None => store.add_untagged(&manifest_blob)?,
    }
    Ok(config_digest)
}

/// What a new image's history entry says.
pub struct HistoryEntry<'a> {
    pub created_by: &'a str,
    pub comment: &'a str,
    pub author: &'a str,
}

/// Appends a layer (by diff_id) and its history entry to an image config, and sets
/// its creation time.
pub fn add_layer(config: &mut Value, diff_id: &Digest, history: &HistoryEntry) -> Result<(), BuildError> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
    let root = config.as_object_mut().ok_or(BuildError::Config)?;
    let rootfs = root.entry("rootfs").or_insert_with(|| json!({"type": "layers"}));
    let rootfs = rootfs.as_object_mut().ok_or(BuildError::Config)?;
    rootfs.insert("type".into(), json!("layers"));
    let ids = rootfs.entry("diff_ids").or_insert_with(|| json!([]));
    ids.as_array_mut()
        .ok_or(BuildError::Config)?
        .push(json!(diff_id.to_string()));
    let mut entry = Map::new();
    entry.insert("created".into(), json!(now));
    entry.insert("created_by".into(), json!(history.created_by));
    if !history.comment.is_empty() {
        entry.insert("comment".into(), json!(history.comment));
    }
    if !history.author.is_empty() {
        entry.insert("author".into(), json!(history.author));
        root.insert("author".into(), json!(history.author));
    }
    let list = root.entry("history").or_insert_with(|| json!([]));
    list.as_array_mut()
        .ok_or(BuildError::Config)?
        .push(Value::Object(entry));
    root.insert("created".into(), json!(now));
    Ok(())
}

/// The config of a new, empty image for this host (`import`).
pub fn empty_config() -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// Applies Dockerfile-style changes (`CMD ["sh"]`, `ENV A=b`, `WORKDIR /x`,
/// `EXPOSE 80/tcp`, ...) to the `config` object of an image config.
pub fn apply_changes(image_config: &mut Value, changes: &[String]) -> Result<(), BuildError> {
    let root = image_config.as_object_mut().ok_or(BuildError::Config)?;
    let config = root.entry("config").or_insert_with(|| json!({}));
    if config.is_null() {
        *config = json!({});
    }
    let config = config.as_object_mut().ok_or(BuildError::Config)?;
    for change in changes {
        apply_change(config, change).map_err(|reason| BuildError::Change {
            change: change.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn apply_change(config: &mut Map<String, Value>, change: &str) -> Result<(), String> {
    let change = change.trim();
    let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let needs_value = |v: &str| {
        if v.is_empty() {
            Err(format!("{word} needs an argument"))
        } else {
            Ok(())
        }
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" => {
            needs_value(rest)?;
            config.insert("Cmd".into(), json!(command_form(rest)?));
        }
        "ENTRYPOINT" => {
            needs_value(rest)?;
            config.insert("Entrypoint".into(), json!(command_form(rest)?));
            // As in a Dockerfile, a new entrypoint drops the inherited CMD.
            config.remove("Cmd");
        }
        "ENV" => {
            needs_value(rest)?;
            let env = config.entry("Env").or_insert_with(|| json!([]));
            let env = env.as_array_mut().ok_or("Env is not a list")?;
            for (key, value) in key_values(rest)? {
                env.retain(|e| e.as_str().is_none_or(|e| e.split_once('=').map_or(e, |(k, _)| k) != key));
                env.push(json!(format!("{key}={value}")));
            }
        }
        "LABEL" => {
            needs_value(rest)?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            if labels.is_null() {
                *labels = json!({});
            }
            let labels = labels.as_object_mut().ok_or("Labels is not a map")?;
            for (key, value) in key_values(rest)? {
                labels.insert(key, json!(value));
            }
        }
        "EXPOSE" => {
            needs_value(rest)?;
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            let ports = ports.as_object_mut().ok_or("ExposedPorts is not a map")?;
            for port in rest.split_whitespace() {
                ports.insert(port_key(port)?, json!({}));
            }
        }
        "VOLUME" => {
            needs_value(rest)?;
            let volumes = config.entry("Volumes").or_insert_with(|| json!({}));
            let volumes = volumes.as_object_mut().ok_or("Volumes is not a map")?;
            let list = match rest.starts_with('[') {
                true => serde_json::from_str::<Vec<String>>(rest).map_err(|e| format!("not a JSON list: {e}"))?,
                false => rest.split_whitespace().map(String::from).collect(),
            };
            for v in list {
                volumes.insert(v, json!({}));
            }
        }
        "WORKDIR" => {
            needs_value(rest)?;
            let dir = match rest.starts_with('/') {
                true => rest.to_owned(),
                false => {
                    let base = config.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
                    format!("{}/{rest}", base.trim_end_matches('/'))
                }
            };
            config.insert("WorkingDir".into(), json!(dir));
        }
        "USER" => {
            needs_value(rest)?;
            config.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            needs_value(rest)?;
            config.insert("StopSignal".into(), json!(rest));
        }
        "ONBUILD" => {
            needs_value(rest)?;
            let list = config.entry("OnBuild").or_insert_with(|| json!([]));
            if list.is_null() {
                *list = json!([]);
            }
            list.as_array_mut().ok_or("OnBuild is not a list")?.push(json!(rest));
        }
        other => return Err(format!("unknown instruction {other:?} (allowed: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)")),
    }
    Ok(())
}

/// `["a", "b"]` (exec form) or `a b` (shell form, run by `/bin/sh -c`).
fn command_form(value: &str) -> Result<Vec<String>, String> {
    if value.starts_with('[') {
        return serde_json::from_str(value).map_err(|e| format!("not a JSON list of strings: {e}"));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), value.into()])
}

/// `K=V K2="V 2"` or the legacy `K V with spaces`.
fn key_values(value: &str) -> Result<Vec<(String, String)>, String> {
    let first = value.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (key, rest) = value
            .split_once(char::is_whitespace)
            .ok_or("needs KEY=VALUE or KEY VALUE")?;
        return Ok(vec![(key.to_owned(), rest.trim().to_owned())]);
    }
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let (mut word, mut quote) = (String::new(), None);
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                ('\\', _) => word.extend(chars.next()),
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        let (k, v) = word
            .split_once('=')
            .ok_or_else(|| format!("{word:?} is not KEY=VALUE"))?;
        if k.is_empty() {
            return Err("empty key".into());
        }
        out.push((k.to_owned(), v.to_owned()));
    }
}

/// `80` -> `80/tcp`; `53/udp` stays.
fn port_key(port: &str) -> Result<String, String> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let valid = number.parse::<u16>().is_ok_and(|n| n > 0) && matches!(proto, "tcp" | "udp" | "sctp");
    match valid {
        true => Ok(format!("{number}/{proto}")),
        false => Err(format!("invalid port {port:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(changes: &[&str]) -> Value {
        let mut c = json!({"config": {"Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"], "WorkingDir": "/app"}});
        apply_changes(&mut c, &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        c["config"].clone()
    }

    #[test]
    fn changes_use_dockerfile_syntax() {
        let c = changed(&[
            r#"CMD ["echo", "hi"]"#,
            "ENV A=new B=\"two words\"",
            "ENV LEGACY value with spaces",
            "WORKDIR sub",
            "EXPOSE 80 53/udp",
            "LABEL org.example=1",
            "USER nobody",
        ]);
        assert_eq!(c["Cmd"], json!(["echo", "hi"]));
        assert_eq!(
            c["Env"],
            json!(["PATH=/bin", "A=new", "B=two words", "LEGACY=value with spaces"])
        );
        assert_eq!(c["WorkingDir"], "/app/sub");
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"], json!({"org.example": "1"}));
        assert_eq!(c["User"], "nobody");
        assert_eq!(
            changed(&["CMD echo $HOME"])["Cmd"],
            json!(["/bin/sh", "-c", "echo $HOME"])
        );
        let e = changed(&[r#"ENTRYPOINT ["/ep"]"#]);
        assert_eq!(e["Entrypoint"], json!(["/ep"]));
        assert!(e.get("Cmd").is_none());
    }

    #[test]
    fn bad_changes_are_refused() {
        for bad in [
            "RUN make",
            "CMD",
            "EXPOSE 99999",
            "ENV A=\"open",
            "CMD [\"unclosed\"",
            "ENV =x",
        ] {
            let mut c = json!({"config": {}});
            let err = apply_changes(&mut c, &[bad.to_string()]).unwrap_err();
            assert!(matches!(err, BuildError::Change { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn a_layer_and_its_history_are_appended() {
        let mut c =
            json!({"rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]}, "history": [{"created_by": "base"}]});
        let d = Digest::of(b"layer");
        let h = HistoryEntry {
            created_by: "sh",
            comment: "msg",
            author: "me",
        };
        add_layer(&mut c, &d, &h).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"], json!(["sha256:aa", d.to_string()]));
        assert_eq!(c["history"][1]["comment"], "msg");
        assert_eq!(c["author"], "me");
        assert!(c["created"].is_string());
    }
}
