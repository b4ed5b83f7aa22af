//! Container labels: `--label KEY=VALUE` and `--label-file FILE` at create, merged
//! over the image's `Labels` as Docker merges them, and the `label=` / `label!=`
//! filters of `ps` and `container prune`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Labels by key; the later of two with one key wins.
pub type Labels = BTreeMap<String, String>;

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("invalid label '{0}': empty name")]
    EmptyName(String),
    #[error("open {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid utf8 bytes at line {line}")]
    NotUtf8 { path: PathBuf, line: usize },
    #[error("{path}: variable '{key}' contains whitespaces")]
    Whitespace { path: PathBuf, key: String },
}

/// One `KEY=VALUE` (or `KEY`, an empty value) as `--label` takes it.
pub fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    let key = key.trim();
    if key.is_empty() {
        return Err(LabelError::EmptyName(text.to_owned()));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The lines of a `--label-file`: blank lines and `#` comments skipped, each other
/// line one label.
pub fn read_label_file(path: &Path) -> Result<Vec<String>, LabelError> {
    let bytes = std::fs::read(path).map_err(|source| LabelError::File {
        path: path.to_owned(),
        source,
    })?;
    let mut lines = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|_| LabelError::NotUtf8 {
            path: path.to_owned(),
            line: n + 1,
        })?;
        let line = line.trim_start().trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            if key.contains(char::is_whitespace) {
                return Err(LabelError::Whitespace {
                    path: path.to_owned(),
                    key: key.to_owned(),
                });
            }
        }
        lines.push(line.to_owned());
    }
    Ok(lines)
}

/// The labels of `--label-file` (in order) and `--label`, the flags' last.
pub fn from_flags(files: &[PathBuf], flags: &[String]) -> Result<Labels, LabelError> {
    let mut entries = Vec::new();
    for file in files {
        entries.extend(read_label_file(file)?);
    }
    entries.extend(flags.iter().cloned());
    entries.iter().map(|e| parse_label(e)).collect()
}

/// The container's labels: the image's, with its own over them.
pub fn merged(image_config: &Value, own: Labels) -> Labels {
    let mut labels = image_labels(image_config);
    labels.extend(own);
    labels
}

/// The image config's `config.Labels`; anything that is not a string map is ignored.
pub fn image_labels(image_config: &Value) -> Labels {
    let Some(map) = image_config
        .get("config")
        .and_then(|c| c.get("Labels"))
        .and_then(Value::as_object)
    else {
        return Labels::new();
    };
    map.iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// `label=KEY` (the key is there), `label=KEY=VALUE` (with that value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    key: String,
    value: Option<String>,
}

impl LabelMatch {
    pub fn parse(text: &str) -> LabelMatch {
        match text.split_once('=') {
            Some((key, value)) => LabelMatch {
                key: key.to_owned(),
                value: Some(value.to_owned()),
            },
            None => LabelMatch {
                key: text.to_owned(),
                value: None,
            },
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match (labels.get(&self.key), &self.value) {
            (Some(_), None) => true,
            (Some(got), Some(wanted)) => got == wanted,
            (None, _) => false,
        }
    }
}

/// Every `label=` and `label!=` filter of one command, as Docker's daemon applies
/// them: a container must match all `label=`, and is left out when it matches all
/// `label!=` (if there are any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelFilters {
    wanted: Vec<LabelMatch>,
    unwanted: Vec<LabelMatch>,
}

impl LabelFilters {
    pub fn want(&mut self, value: &str) {
        self.wanted.push(LabelMatch::parse(value));
    }

    pub fn refuse(&mut self, value: &str) {
        self.unwanted.push(LabelMatch::parse(value));
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.wanted.iter().all(|m| m.matches(labels))
            && (self.unwanted.is_empty() || !self.unwanted.iter().all(|m| m.matches(labels)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn labels_parse_as_docker_parses_them() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("flag").unwrap(), ("flag".into(), "".into()));
        assert_eq!(parse_label(" k =v").unwrap(), ("k".into(), "v".into()));
        assert_eq!(
            parse_label("=v").unwrap_err().to_string(),
            "invalid label '=v': empty name"
        );
    }

    #[test]
    fn flags_override_files_which_override_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels");
        std::fs::write(&file, "# comment\n\n  from=file\nboth=file\nbare\n").unwrap();
        let image = json!({"config": {"Labels": {"from": "image", "image": "yes", "n": 1}}});
        let got = merged(&image, from_flags(&[file], &["both=flag".into()]).unwrap());
        assert_eq!(
            got,
            labels(&[("from", "file"), ("image", "yes"), ("both", "flag"), ("bare", "")])
        );
    }

    #[test]
    fn bad_label_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("labels");
        std::fs::write(&file, "a b=c\n").unwrap();
        assert!(matches!(read_label_file(&file), Err(LabelError::Whitespace { .. })));
        std::fs::write(&file, b"ok=1\n\xff=2\n").unwrap();
        assert!(matches!(
            read_label_file(&file),
            Err(LabelError::NotUtf8 { line: 2, .. })
        ));
        assert!(matches!(
            read_label_file(&dir.path().join("none")),
            Err(LabelError::File { .. })
        ));
    }

    #[test]
    fn filters_match_keys_and_values() {
        let l = labels(&[("tier", "web"), ("team", "")]);
        let mut f = LabelFilters::default();
        assert!(f.matches(&l));
        f.want("tier");
        f.want("tier=web");
        assert!(f.matches(&l));
        f.want("team=x");
        assert!(!f.matches(&l));
        let mut not = LabelFilters::default();
        not.refuse("tier=web");
        assert!(!not.matches(&l));
        assert!(not.matches(&labels(&[("tier", "db")])));
        assert!(not.matches(&Labels::new()));
    }
}
