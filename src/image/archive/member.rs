//! Archive member names: one rule for every name and link target.
//!
//! A member name is relative, UTF-8, without `..`; `./` prefixes, `.` components
//! and repeated slashes are dropped. A link target may use `..` as long as it stays
//! inside the archive. A name under `blobs/` is a digest and must parse as one.

use super::{ArchiveError, Result};
use crate::image::digest::Digest;
use crate::image::manifest::Compression;

/// Normalises a member name, refusing absolute names and `..`.
pub(super) fn normalise(raw: &[u8]) -> Result<String> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    let name = std::str::from_utf8(raw).map_err(|_| ArchiveError::MemberName(shown()))?;
    if name.starts_with('/') || name.contains('\0') {
        return Err(ArchiveError::MemberName(shown()));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(ArchiveError::MemberName(shown())),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a link target against the directory of `link` (symbolic links) or the
/// archive root (hard links), refusing targets that leave the archive.
pub(super) fn link_target(link: &str, target: &[u8], symbolic: bool) -> Result<String> {
    let bad = || ArchiveError::Link {
        member: link.to_owned(),
    };
    let target = std::str::from_utf8(target).map_err(|_| bad())?;
    if target.starts_with('/') {
        return Err(bad());
    }
    let mut parts: Vec<&str> = Vec::new();
    if symbolic {
        parts.extend(link.split('/'));
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(bad)?;
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The digest a member's name claims: `blobs/<alg>/<hex>` or a top-level
/// `<hex>.json` (older `docker save` configs). Other names claim none.
pub(super) fn claimed_digest(member: &str) -> Result<Option<Digest>> {
    let claimed = if let Some(rest) = member.strip_prefix("blobs/") {
        rest.replacen('/', ":", 1)
    } else if let Some(stem) = member.strip_suffix(".json").filter(|s| !s.contains('/')) {
        if matches!(stem, "manifest" | "index" | "repositories") {
            return Ok(None);
        }
        format!("sha256:{stem}")
    } else {
        return Ok(None);
    };
    Digest::parse(&claimed)
        .map(Some)
        .map_err(|source| ArchiveError::MemberDigest {
            member: member.to_owned(),
            source,
        })
}

/// The compression a member's first bytes show.
pub(super) fn sniff(head: &[u8]) -> Compression {
    match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalise_drops_dot_prefixes_and_refuses_escapes() {
        assert_eq!(normalise(b"./blobs//sha256/x").unwrap(), "blobs/sha256/x");
        assert_eq!(normalise(b"abc/").unwrap(), "abc");
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a/..", b"\xff"] {
            assert!(matches!(normalise(bad), Err(ArchiveError::MemberName(_))), "{bad:?}");
        }
    }

    #[test]
    fn symlink_target_resolves_inside_the_archive_only() {
        assert_eq!(
            link_target("b/layer.tar", b"../a/layer.tar", true).unwrap(),
            "a/layer.tar"
        );
        assert_eq!(
            link_target("b/layer.tar", b"a/layer.tar", false).unwrap(),
            "a/layer.tar"
        );
        assert!(link_target("b/layer.tar", b"../../x", true).is_err());
        assert!(link_target("b/layer.tar", b"/etc/passwd", true).is_err());
    }

    #[test]
    fn digest_names_must_parse_as_digests() {
        assert_eq!(
            claimed_digest(&format!("blobs/sha256/{HEX}")).unwrap().unwrap().hex(),
            HEX
        );
        assert_eq!(claimed_digest(&format!("{HEX}.json")).unwrap().unwrap().hex(), HEX);
        assert!(claimed_digest("manifest.json").unwrap().is_none());
        assert!(claimed_digest("abc/layer.tar").unwrap().is_none());
        for bad in ["blobs/sha256/x", "blobs/md5/ab", "blobs/sha256", "notahash.json"] {
            assert!(
                matches!(claimed_digest(bad), Err(ArchiveError::MemberDigest { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn sniff_knows_gzip_zstd_and_plain() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"bin/"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
    }
}
