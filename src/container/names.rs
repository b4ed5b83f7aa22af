//! Container ids and names.

use std::io::Read;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid container name ({0:?}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    Invalid(String),
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading `/` is accepted and dropped).
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if follows_name_rule(bare) {
        Ok(bare.to_owned())
    } else {
        Err(NameError::Invalid(name.chars().take(140).collect()))
    }
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, at most 128 bytes: container and volume names.
pub fn follows_name_rule(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() >= 2
        && name.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// 32 random bytes as 64 hex digits.
pub fn new_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

const ADJECTIVES: [&str; 24] = [
    "brave", "calm", "clever", "eager", "fervent", "gallant", "happy", "jolly", "keen", "kind", "lucid", "nifty",
    "patient", "quiet", "quirky", "relaxed", "serene", "sharp", "steady", "stoic", "swift", "tender", "vivid", "wise",
];
const NOUNS: [&str; 24] = [
    "anchor", "beacon", "bollard", "bow", "capstan", "cutter", "dinghy", "galley", "hatch", "helm", "jib", "keel",
    "ketch", "mast", "pier", "rudder", "schooner", "sextant", "skiff", "sloop", "spar", "stern", "tiller", "yawl",
];

/// A Docker-style `adjective_noun` name drawn from `id`'s bytes; `attempt` > 0 adds a
/// number, for collisions.
pub fn generated_name(id: &str, attempt: u32) -> String {
    let b = id.as_bytes();
    let pick = |i: usize| b.get(i).map_or(0, |&c| c as usize) * 7 + b.get(i + 1).map_or(0, |&c| c as usize);
    let name = format!("{}_{}", ADJECTIVES[pick(0) % 24], NOUNS[pick(2) % 24]);
    if attempt == 0 {
        name
    } else {
        format!("{name}{attempt}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert_eq!(validate_name("web-1.a_b").unwrap(), "web-1.a_b");
        assert_eq!(validate_name("/web").unwrap(), "web");
        for bad in ["", "a", "-web", "_x", "we b", "we/b", "ünï", "a\n", &"x".repeat(200)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_64_hex_and_generated_names_are_valid() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        for attempt in 0..3 {
            let name = generated_name(&id, attempt);
            assert_eq!(validate_name(&name).unwrap(), name);
        }
    }
}
