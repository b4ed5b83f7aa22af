//! Entry names: one rule turns a tar name into components below the image root.
//!
//! The rule: split on `/`; drop empty and `.` components (so a leading `/` or `./`
//! re-roots the name at the image root); refuse any `..` component, any NUL byte,
//! any name that is not UTF-8, and any component longer than 255 bytes.

/// The longest name one directory entry may have.
pub const NAME_MAX: usize = 255;

/// Prefix marking an OCI whiteout.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name marking a directory whose lower-layer contents are hidden.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("`{name}` climbs out with `..`")]
    Traversal { name: String },
    #[error("`{name}` contains a NUL byte")]
    Nul { name: String },
    #[error("`{name}` is not UTF-8")]
    NotUtf8 { name: String },
    #[error("`{name}` has a component longer than {NAME_MAX} bytes")]
    ComponentTooLong { name: String },
    #[error("`{name}` is {len} bytes long, over the limit of {limit}")]
    TooLong { name: String, len: usize, limit: usize },
}

/// What the last component of an entry's name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf<'a> {
    /// An ordinary name.
    Name(&'a [u8]),
    /// `.wh.NAME`: hide `NAME` of lower layers.
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: hide all lower-layer contents of the directory.
    Opaque,
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits `name` into its components below the root; empty for the root itself.
pub fn components(name: &[u8], max_len: usize) -> Result<Vec<&[u8]>, PathError> {
    if name.len() > max_len {
        return Err(PathError::TooLong {
            name: lossy(&name[..64.min(name.len())]),
            len: name.len(),
            limit: max_len,
        });
    }
    if name.contains(&0) {
        return Err(PathError::Nul { name: lossy(name) });
    }
    if std::str::from_utf8(name).is_err() {
        return Err(PathError::NotUtf8 { name: lossy(name) });
    }
    let mut parts = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(PathError::Traversal { name: lossy(name) }),
            _ if part.len() > NAME_MAX => return Err(PathError::ComponentTooLong { name: lossy(name) }),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// Classifies the last component of an entry's name.
pub fn leaf(name: &[u8]) -> Result<Leaf<'_>, InvalidWhiteout> {
    if name == OPAQUE_MARKER {
        return Ok(Leaf::Opaque);
    }
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(Leaf::Name(name));
    };
    // `.wh..wh.` is reserved for markers; only the opaque marker is defined.
    if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(WHITEOUT_PREFIX) {
        return Err(InvalidWhiteout { name: lossy(name) });
    }
    Ok(Leaf::Whiteout(hidden))
}

/// A whiteout name that hides nothing nameable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid whiteout `{name}`")]
pub struct InvalidWhiteout {
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_reroots_absolute_and_dot_names() {
        assert_eq!(
            components(b"/etc//./passwd", 4096).unwrap(),
            vec![&b"etc"[..], b"passwd"]
        );
        assert_eq!(components(b"./", 4096).unwrap(), Vec::<&[u8]>::new());
    }

    #[test]
    fn components_refuses_dotdot_anywhere() {
        for name in [&b"../x"[..], b"a/../../x", b"a/..", b"/.."] {
            assert!(
                matches!(components(name, 4096), Err(PathError::Traversal { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn components_refuses_nul_non_utf8_and_long_names() {
        assert!(matches!(components(b"a\0b", 4096), Err(PathError::Nul { .. })));
        assert!(matches!(components(b"\xff", 4096), Err(PathError::NotUtf8 { .. })));
        assert!(matches!(
            components(&[b'a'; 256], 4096),
            Err(PathError::ComponentTooLong { .. })
        ));
        assert!(matches!(components(b"abcdef", 4), Err(PathError::TooLong { .. })));
    }

    #[test]
    fn leaf_classifies_whiteouts_and_refuses_invalid_forms() {
        assert_eq!(leaf(b".wh.x").unwrap(), Leaf::Whiteout(b"x"));
        assert_eq!(leaf(b".wh..wh..opq").unwrap(), Leaf::Opaque);
        assert_eq!(leaf(b"x.wh.").unwrap(), Leaf::Name(b"x.wh."));
        for bad in [&b".wh."[..], b".wh..", b".wh...", b".wh..wh.foo", b".wh..wh..opqx"] {
            assert!(leaf(bad).is_err(), "{bad:?}");
        }
    }
}
