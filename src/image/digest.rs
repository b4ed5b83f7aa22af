//! Content digests (`sha256:<64 hex>`): the one parser every digest goes through
//! before it becomes a path or a URL.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a string is not an acceptable digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// no `algorithm:` prefix
    #[error("invalid digest {0:?}: expected ALGORITHM:HEX")]
    Format(String),
    /// an algorithm other than sha256
    #[error("invalid digest {0:?}: unsupported algorithm (only sha256 is supported)")]
    Algorithm(String),
    /// wrong length or a character outside `[0-9a-f]`
    #[error("invalid digest {0:?}: sha256 needs 64 lowercase hex characters")]
    Encoded(String),
}

/// A validated sha256 digest. Its hex part is safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else is refused.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let shown = truncate_for_error(s);
        let (algorithm, encoded) = s.split_once(':').ok_or_else(|| DigestError::Format(shown.clone()))?;
        if algorithm != "sha256" {
            return Err(DigestError::Algorithm(shown));
        }
        let valid = encoded.len() == 64 && encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(DigestError::Encoded(shown));
        }
        Ok(Digest {
            hex: encoded.to_owned(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// Builds a digest from a finished hasher.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as Docker shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Keeps error messages one short line whatever the input.
pub(crate) fn truncate_for_error(s: &str) -> String {
    const MAX: usize = 100;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_matches_known_value() {
        assert_eq!(Digest::of(b"").to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn parse_accepts_canonical_sha256() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn parse_rejects_path_traversal() {
        assert!(matches!(Digest::parse("sha256:../../x"), Err(DigestError::Encoded(_))));
    }

    #[test]
    fn parse_rejects_wrong_length_uppercase_and_unknown_algorithm() {
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", &HEX[1..])),
            Err(DigestError::Encoded(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("sha256:{}", HEX.to_uppercase())),
            Err(DigestError::Encoded(_))
        ));
        assert!(matches!(
            Digest::parse(&format!("md5:{HEX}")),
            Err(DigestError::Algorithm(_))
        ));
        assert!(matches!(Digest::parse(HEX), Err(DigestError::Format(_))));
    }

    #[test]
    fn error_for_huge_input_stays_short() {
        let long = "x".repeat(100_000);
        assert!(Digest::parse(&long).unwrap_err().to_string().len() < 200);
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_hex_is_a_safe_file_name(s in "\\PC*") {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert!(d.hex().bytes().all(|b| b.is_ascii_hexdigit()));
                prop_assert_eq!(d.to_string(), s);
            }
        }

        #[test]
        fn display_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let d = Digest::of(&bytes);
            prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
        }
    }
}
