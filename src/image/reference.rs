//! Docker image references: parsing and normalisation.
//!
//! `alpine` becomes `docker.io/library/alpine:latest`; `localhost:5000/x@sha256:...`
//! keeps its registry and digest. The grammar follows the distribution project's
//! reference format: a domain is recognised by a `.` or `:` or the name `localhost`,
//! path components are lowercase alphanumerics joined by `.`, `_`, `__` or dashes.

use std::fmt;
use std::str::FromStr;

use super::digest::{truncate_for_error, Digest, DigestError};

/// The registry of references that name none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a reference was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: {0:?} is empty")]
    Empty(String),
    #[error("invalid reference format: repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: {0:?}")]
    Format(String),
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    NameTooLong(String),
    #[error("invalid reference format: tag in {0:?} must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    Tag(String),
    #[error("invalid reference format: {reference:?}")]
    Digest {
        reference: String,
        #[source]
        source: DigestError,
    },
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as Docker does.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let shown = truncate_for_error(input);
        if input.is_empty() {
            return Err(ReferenceError::Empty(shown));
        }
        let (rest, digest) = split_digest(input, &shown)?;
        let (name, tag) = split_tag(rest);
        if let Some(tag) = tag {
            validate_tag(tag, &shown)?;
        }
        let (registry, repository) = split_domain(name);
        validate_domain(registry, &shown)?;
        validate_path(repository, &shown)?;
        let (registry, repository) = normalise(registry, repository);
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(shown));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (tag, _) => tag.map(str::to_owned),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// A reference to `digest` in the same repository, without the tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the full name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as Docker shows it: `alpine`, `user/app`, `localhost:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry != DEFAULT_REGISTRY {
            return self.name();
        }
        match self.repository.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short.to_owned(),
            _ => self.repository.clone(),
        }
    }

    /// The name with its tag (or digest) as Docker shows it.
    pub fn familiar(&self) -> String {
        self.to_string().replacen(&self.name(), &self.familiar_name(), 1)
    }
}

fn split_digest<'a>(input: &'a str, shown: &str) -> Result<(&'a str, Option<Digest>), ReferenceError> {
    match input.split_once('@') {
        None => Ok((input, None)),
        Some((rest, digest)) => {
            let digest = Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                reference: shown.to_owned(),
                source,
            })?;
            Ok((rest, Some(digest)))
        }
    }
}

/// A tag follows the last `:` that comes after the last `/` (so ports stay).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    }
}

fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

fn normalise(registry: &str, repository: &str) -> (String, String) {
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_owned()
    };
    (registry.to_owned(), repository)
}

fn validate_tag(tag: &str, shown: &str) -> Result<(), ReferenceError> {
    let bytes = tag.as_bytes();
    let first_ok = bytes.first().is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && bytes.len() <= MAX_TAG_LEN {
        Ok(())
    } else {
        Err(ReferenceError::Tag(shown.to_owned()))
    }
}

/// host[:port] where host is dot-separated labels of alphanumerics and dashes, or an
/// IPv6 literal in brackets.
fn validate_domain(domain: &str, shown: &str) -> Result<(), ReferenceError> {
    let bad = || ReferenceError::Format(shown.to_owned());
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (None, port)
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
    }
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Path components: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, separated by `/`.
fn validate_path(path: &str, shown: &str) -> Result<(), ReferenceError> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase(shown.to_owned()));
    }
    if path.split('/').all(valid_component) {
        Ok(())
    } else {
        Err(ReferenceError::Format(shown.to_owned()))
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(&b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(&b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn short_names_normalise_to_docker_hub_library() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
    }

    #[test]
    fn registries_with_ports_keep_port_and_tag() {
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:v1.2"), "127.0.0.1:5000/a/b:v1.2");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("[::1]:5000/app:x"), "[::1]:5000/app:x");
    }

    #[test]
    fn digest_references_have_no_default_tag() {
        let r = Reference::parse(&format!("alpine@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine@sha256:{HEX}"));
        let r = Reference::parse(&format!("alpine:3@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("3"));
    }

    #[test]
    fn familiar_names_match_docker_output() {
        assert_eq!(Reference::parse("alpine").unwrap().familiar_name(), "alpine");
        assert_eq!(Reference::parse("user/app").unwrap().familiar_name(), "user/app");
        assert_eq!(
            Reference::parse("localhost:5000/app").unwrap().familiar_name(),
            "localhost:5000/app"
        );
        assert_eq!(Reference::parse("alpine:3").unwrap().familiar(), "alpine:3");
    }

    #[test]
    fn invalid_references_are_refused() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "a//b",
            "/a",
            "a/",
            "a b",
            "a@sha256:../../x",
            "a@md5:00",
            "-a",
            "a..b",
            "a:b:c",
            "host:99999999/a",
            "a@",
            "[zz]:5/a",
            ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn malformed_digest_in_reference_names_the_reference() {
        let err = Reference::parse("app@sha256:../../x").unwrap_err();
        assert!(matches!(err, ReferenceError::Digest { .. }));
        assert!(err.to_string().contains("app@sha256:../../x"));
    }

    #[test]
    fn overlong_names_are_refused() {
        let long = format!("example.com/{}", "a".repeat(300));
        assert!(matches!(Reference::parse(&long), Err(ReferenceError::NameTooLong(_))));
        assert!(matches!(
            Reference::parse(&format!("a:{}", "t".repeat(129))),
            Err(ReferenceError::Tag(_))
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,300}") {
            let _ = Reference::parse(&s);
        }

        #[test]
        fn normalised_form_is_a_fixed_point(s in "([a-z0-9]{1,8}(\\.[a-z]{1,3})?(:[0-9]{1,4})?/)?[a-z0-9]{1,8}([._-][a-z0-9]{1,5})?(/[a-z0-9]{1,6})?(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,10})?") {
            if let Ok(r) = Reference::parse(&s) {
                let again = Reference::parse(&r.to_string()).unwrap();
                prop_assert_eq!(again, r);
            }
        }
    }
}
