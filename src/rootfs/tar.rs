//! A strict, bounded reader of tar streams: ustar, GNU and PAX forms.
//!
//! Only what OCI layers need is accepted. Every size comes from the stream and is
//! checked against [`Limits`](super::Limits) before anything is read into memory.
//! A PAX `size` that disagrees with the header's size field is an error, so two
//! readers can never see different entry boundaries in the same layer.

use std::io::{self, Read};

/// Size of a tar header and of the unit entry data is padded to.
pub const BLOCK: u64 = 512;

/// The kind of filesystem object an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Regular,
    HardLink,
    Symlink,
    CharDevice,
    BlockDevice,
    Directory,
    Fifo,
}

/// One tar member with its extension records applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryHeader {
    pub kind: EntryKind,
    pub path: Vec<u8>,
    pub link_target: Vec<u8>,
    /// Permission bits, setuid, setgid and sticky included (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of data following the header.
    pub size: u64,
    pub mtime: u64,
    pub mtime_nsec: u32,
    pub dev_major: u64,
    pub dev_minor: u64,
    /// Extended attributes from `SCHILY.xattr.` PAX records, in stream order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a tar stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// reading the layer stream failed
    #[error("reading the layer stream failed")]
    Io(#[source] io::Error),
    /// the stream ends inside a header
    #[error("the stream ends inside a header")]
    TruncatedHeader,
    /// the stream ends before the entry's data does
    #[error("the stream ends {missing} bytes before the end of the entry's data")]
    TruncatedData { missing: u64 },
    #[error("header checksum {stored:#o} does not match the computed {computed:#o}")]
    Checksum { stored: u64, computed: u64 },
    #[error("header field `{field}` is not a valid number")]
    BadNumber { field: &'static str },
    #[error("pax size {pax} disagrees with the header size {header}")]
    PaxSizeMismatch { header: u64, pax: u64 },
    #[error("malformed pax record at byte {offset}")]
    BadPaxRecord { offset: usize },
    #[error("pax record `{key}` has an invalid value")]
    BadPaxValue { key: String },
    #[error("{what} extension of {size} bytes exceeds the limit of {limit}")]
    ExtensionTooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("two {what} extensions describe the same entry")]
    DuplicateExtension { what: &'static str },
    #[error("an extension header is not followed by an entry")]
    DanglingExtension,
    #[error("unsupported entry type {typeflag:?}")]
    UnsupportedType { typeflag: char },
    #[error("sparse files are not supported")]
    Sparse,
    #[error("global pax record `{key}` is not supported")]
    UnsupportedGlobal { key: String },
}

/// Extension records collected for the next member.
#[derive(Default)]
struct Extensions {
    pax: Option<Vec<u8>>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
}

/// Reads tar members one after another from `R`.
pub struct TarReader<R> {
    inner: R,
    /// Data bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    max_extension_bytes: u64,
    finished: bool,
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R, max_extension_bytes: u64) -> Self {
        TarReader {
            inner,
            remaining: 0,
            padding: 0,
            max_extension_bytes,
            finished: false,
        }
    }

    /// The next member, skipping the unread data of the current one; `None` at the
    /// end-of-archive marker or at a clean end of stream.
    pub fn next_entry(&mut self) -> Result<Option<EntryHeader>, TarError> {
        if self.finished {
            return Ok(None);
        }
        self.skip_rest()?;
        let mut ext = Extensions::default();
        loop {
            let Some(block) = self.read_header_block()? else {
                return self.end_of_archive(&ext);
            };
            let typeflag = block[156];
            match typeflag {
                b'x' => self.read_extension(&block, "pax", &mut ext.pax)?,
                b'L' => self.read_extension(&block, "long name", &mut ext.long_name)?,
                b'K' => self.read_extension(&block, "long link", &mut ext.long_link)?,
                b'g' => self.read_global(&block)?,
                _ => return parse_member(&block, ext).map(|h| self.begin_data(h)),
            }
        }
    }

    /// Reads data of the current entry; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let got = read_retry(&mut self.inner, &mut buf[..want]).map_err(TarError::Io)?;
        if got == 0 {
            return Err(TarError::TruncatedData {
                missing: self.remaining,
            });
        }
        self.remaining -= got as u64;
        Ok(got)
    }

    /// Gives back the underlying stream, positioned after what was consumed.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn begin_data(&mut self, header: EntryHeader) -> Option<EntryHeader> {
        self.remaining = header.size;
        self.padding = padding_after(header.size);
        Some(header)
    }

    fn end_of_archive(&mut self, ext: &Extensions) -> Result<Option<EntryHeader>, TarError> {
        self.finished = true;
        if ext.pax.is_some() || ext.long_name.is_some() || ext.long_link.is_some() {
            return Err(TarError::DanglingExtension);
        }
        Ok(None)
    }

    /// The next header block; `None` for an all-zero block or a clean end of stream.
    fn read_header_block(&mut self) -> Result<Option<[u8; 512]>, TarError> {
        let mut block = [0u8; 512];
        let got = read_full(&mut self.inner, &mut block).map_err(TarError::Io)?;
        if got == 0 {
            return Ok(None);
        }
        if got < block.len() {
            return Err(TarError::TruncatedHeader);
        }
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        verify_checksum(&block)?;
        Ok(Some(block))
    }

    fn read_extension(
        &mut self,
        block: &[u8; 512],
        what: &'static str,
        slot: &mut Option<Vec<u8>>,
    ) -> Result<(), TarError> {
        if slot.is_some() {
            return Err(TarError::DuplicateExtension { what });
        }
        *slot = Some(self.read_extension_body(block, what)?);
        Ok(())
    }

    fn read_extension_body(&mut self, block: &[u8; 512], what: &'static str) -> Result<Vec<u8>, TarError> {
        let size = parse_number(&block[124..136], "size")?;
        if size > self.max_extension_bytes {
            return Err(TarError::ExtensionTooLarge {
                what,
                size,
                limit: self.max_extension_bytes,
            });
        }
        // Bounded by `max_extension_bytes` just above.
        let mut body = vec![0u8; size as usize];
        let got = read_full(&mut self.inner, &mut body).map_err(TarError::Io)?;
        if got < body.len() {
            return Err(TarError::TruncatedData {
                missing: size - got as u64,
            });
        }
        self.skip_bytes(padding_after(size))?;
        Ok(body)
    }

    /// Global PAX headers may carry only comments: anything else would change how
    /// every later member is read, which OCI layers never need.
    fn read_global(&mut self, block: &[u8; 512]) -> Result<(), TarError> {
        let body = self.read_extension_body(block, "global pax")?;
        for (key, _) in pax_records(&body)? {
            if key != b"comment" {
                return Err(TarError::UnsupportedGlobal { key: lossy(key) });
            }
        }
        Ok(())
    }

    fn skip_rest(&mut self) -> Result<(), TarError> {
        let rest = self.remaining + self.padding;
        self.remaining = 0;
        self.padding = 0;
        self.skip_bytes(rest)
    }

    fn skip_bytes(&mut self, count: u64) -> Result<(), TarError> {
        let copied = io::copy(&mut (&mut self.inner).take(count), &mut io::sink()).map_err(TarError::Io)?;
        if copied < count {
            return Err(TarError::TruncatedData {
                missing: count - copied,
            });
        }
        Ok(())
    }
}

fn padding_after(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn read_retry<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let got = read_retry(r, &mut buf[filled..])?;
        if got == 0 {
            break;
        }
        filled += got;
    }
    Ok(filled)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn verify_checksum(block: &[u8; 512]) -> Result<(), TarError> {
    let stored = parse_number(&block[148..156], "chksum")?;
    // The checksum field itself counts as eight spaces.
    let (mut unsigned, mut signed) = (8 * u64::from(b' '), 8 * i64::from(b' '));
    for &b in block[..148].iter().chain(&block[156..]) {
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    // Some historic writers summed signed bytes; accept either form.
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        return Ok(());
    }
    Err(TarError::Checksum {
        stored,
        computed: unsigned,
    })
}

/// Parses an octal field, or a GNU base-256 one (high bit set, positive only).
pub fn parse_number(field: &[u8], name: &'static str) -> Result<u64, TarError> {
    let bad = || TarError::BadNumber { field: name };
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] != 0x80 {
            return Err(bad());
        }
        return field[1..].iter().try_fold(0u64, |acc, &b| {
            acc.checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(bad)
        });
    }
    let text = trim_field(field);
    let text = text.iter().skip_while(|&&b| b == b' ').copied().collect::<Vec<u8>>();
    let digits: &[u8] = match text.iter().position(|&b| b == b' ' || b == 0) {
        Some(end) => &text[..end],
        None => &text,
    };
    if text[digits.len()..].iter().any(|&b| b != b' ' && b != 0) {
        return Err(bad());
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !(b'0'..=b'7').contains(&b) {
            return Err(bad());
        }
        acc.checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)
    })
}

/// The bytes of a NUL-terminated header string field.
fn trim_field(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

fn kind_of(typeflag: u8, name: &[u8]) -> Result<EntryKind, TarError> {
    Ok(match typeflag {
        // An old-style regular entry whose name ends in '/' is a directory.
        0 if name.ends_with(b"/") => EntryKind::Directory,
        b'0' | 0 | b'7' => EntryKind::Regular,
        b'1' => EntryKind::HardLink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDevice,
        b'4' => EntryKind::BlockDevice,
        b'5' => EntryKind::Directory,
        b'6' => EntryKind::Fifo,
        b'S' => return Err(TarError::Sparse),
        other => {
            return Err(TarError::UnsupportedType {
                typeflag: char::from(other),
            })
        }
    })
}

fn ustar_name(block: &[u8; 512]) -> Vec<u8> {
    let name = trim_field(&block[0..100]);
    let is_posix_ustar = &block[257..263] == b"ustar\0";
    let prefix = trim_field(&block[345..500]);
    if !is_posix_ustar || prefix.is_empty() {
        return name.to_vec();
    }
    let mut full = Vec::with_capacity(prefix.len() + 1 + name.len());
    full.extend_from_slice(prefix);
    full.push(b'/');
    full.extend_from_slice(name);
    full
}

fn parse_member(block: &[u8; 512], ext: Extensions) -> Result<EntryHeader, TarError> {
    let mut path = ext.long_name.map(trim_nuls).unwrap_or_else(|| ustar_name(block));
    let has_devices = &block[257..262] == b"ustar";
    let mut header = EntryHeader {
        kind: kind_of(block[156], &path)?,
        path: Vec::new(),
        link_target: ext
            .long_link
            .map(trim_nuls)
            .unwrap_or_else(|| trim_field(&block[157..257]).to_vec()),
        mode: (parse_number(&block[100..108], "mode")? & 0o7777) as u32,
        uid: parse_number(&block[108..116], "uid")?,
        gid: parse_number(&block[116..124], "gid")?,
        size: parse_number(&block[124..136], "size")?,
        mtime: parse_number(&block[136..148], "mtime")?,
        mtime_nsec: 0,
        dev_major: if has_devices {
            parse_number(&block[329..337], "devmajor")?
        } else {
            0
        },
        dev_minor: if has_devices {
            parse_number(&block[337..345], "devminor")?
        } else {
            0
        },
        xattrs: Vec::new(),
    };
    if let Some(pax) = ext.pax {
        apply_pax(&mut header, &mut path, &pax)?;
    }
    header.path = path;
    Ok(header)
}

fn trim_nuls(mut bytes: Vec<u8>) -> Vec<u8> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.truncate(end);
    bytes
}

fn apply_pax(header: &mut EntryHeader, path: &mut Vec<u8>, pax: &[u8]) -> Result<(), TarError> {
    for (key, value) in pax_records(pax)? {
        match key {
            b"path" => *path = value.to_vec(),
            b"linkpath" => header.link_target = value.to_vec(),
            b"size" => check_pax_size(header.size, pax_decimal(key, value)?)?,
            b"uid" => header.uid = pax_decimal(key, value)?,
            b"gid" => header.gid = pax_decimal(key, value)?,
            b"mtime" => (header.mtime, header.mtime_nsec) = pax_time(key, value)?,
            _ if key.starts_with(b"GNU.sparse.") => return Err(TarError::Sparse),
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    header.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

fn check_pax_size(header: u64, pax: u64) -> Result<(), TarError> {
    if header != pax {
        return Err(TarError::PaxSizeMismatch { header, pax });
    }
    Ok(())
}

/// One PAX record: key and value bytes.
pub type PaxRecord<'a> = (&'a [u8], &'a [u8]);

/// Splits a PAX extended header body into `(key, value)` records, strictly.
pub fn pax_records(body: &[u8]) -> Result<Vec<PaxRecord<'_>>, TarError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < body.len() {
        let bad = TarError::BadPaxRecord { offset };
        let rest = &body[offset..];
        let space = rest.iter().take(20).position(|&b| b == b' ').ok_or(bad)?;
        let len = decimal(&rest[..space]).ok_or(TarError::BadPaxRecord { offset })?;
        let len = usize::try_from(len).map_err(|_| TarError::BadPaxRecord { offset })?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(TarError::BadPaxRecord { offset });
        }
        let record = &rest[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TarError::BadPaxRecord { offset })?;
        if eq == 0 {
            return Err(TarError::BadPaxRecord { offset });
        }
        records.push((&record[..eq], &record[eq + 1..]));
        offset += len;
    }
    Ok(records)
}

fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn pax_decimal(key: &[u8], value: &[u8]) -> Result<u64, TarError> {
    decimal(value).ok_or_else(|| TarError::BadPaxValue { key: lossy(key) })
}

/// Parses `SECONDS[.FRACTION]`; times before 1970 are refused.
fn pax_time(key: &[u8], value: &[u8]) -> Result<(u64, u32), TarError> {
    let bad = || TarError::BadPaxValue { key: lossy(key) };
    let (secs, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    let secs = decimal(secs).ok_or_else(bad)?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let nsec = frac
        .iter()
        .chain(std::iter::repeat(&b'0'))
        .take(9)
        .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    Ok((secs, nsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_number_reads_octal_with_padding() {
        assert_eq!(parse_number(b"0000644\0", "mode").unwrap(), 0o644);
        assert_eq!(parse_number(b"   755 \0", "mode").unwrap(), 0o755);
        assert_eq!(parse_number(b"\0\0\0\0", "mode").unwrap(), 0);
    }

    #[test]
    fn parse_number_rejects_garbage_and_negative_base256() {
        assert!(parse_number(b"12a4\0", "size").is_err());
        assert!(parse_number(&[0xff, 0xff, 0xff, 0xff], "uid").is_err());
        assert!(parse_number(b"77777777777777777777777", "size").is_err());
    }

    #[test]
    fn parse_number_reads_base256() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[11] = 0x01;
        field[10] = 0x02;
        assert_eq!(parse_number(&field, "size").unwrap(), 0x0201);
    }

    #[test]
    fn pax_records_rejects_length_past_end() {
        assert!(pax_records(b"99 path=x\n").is_err());
        assert!(pax_records(b"8 path=x\n").is_err());
        assert!(pax_records(b"9 path=x\n").is_ok());
        let ok = pax_records(b"11 path=ab\n").unwrap();
        assert_eq!(ok, vec![(&b"path"[..], &b"ab"[..])]);
    }

    #[test]
    fn pax_time_keeps_nanoseconds() {
        assert_eq!(pax_time(b"mtime", b"12.5").unwrap(), (12, 500_000_000));
        assert_eq!(pax_time(b"mtime", b"7").unwrap(), (7, 0));
        assert!(pax_time(b"mtime", b"-7").is_err());
    }
}
