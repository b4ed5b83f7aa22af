//! `--ulimit NAME=SOFT[:HARD]` and `--sysctl KEY=VALUE`, checked as Docker checks
//! them; the guest agent applies them (rlimits in each process before it runs,
//! sysctls under the guest's `/proc/sys` before the first process).

use guest_agent::protocol::{ulimit_resource, Ulimit};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TunableError {
    #[error("invalid ulimit argument: {0}")]
    UlimitFormat(String),
    #[error("invalid ulimit type: {0}")]
    UlimitName(String),
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    UlimitOrder { soft: i64, hard: i64 },
    #[error("invalid argument {0:?} for \"--sysctl\" flag: expected KEY=VALUE")]
    SysctlFormat(String),
    #[error("sysctl {0:?} is not in a separate kernel namespace")]
    NotNamespaced(String),
}

/// One `--ulimit`; `-1` is unlimited.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, TunableError> {
    let format = || TunableError::UlimitFormat(text.chars().take(140).collect());
    let (name, limits) = text.split_once('=').ok_or_else(format)?;
    if ulimit_resource(name).is_none() {
        return Err(TunableError::UlimitName(name.chars().take(64).collect()));
    }
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let number = |s: &str| s.parse::<i64>().ok().filter(|&n| n >= -1).ok_or_else(format);
    let (soft, hard) = (number(soft)?, number(hard)?);
    let raw = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
    if raw(soft) > raw(hard) {
        return Err(TunableError::UlimitOrder { soft, hard });
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft: raw(soft),
        hard: raw(hard),
    })
}

/// A limit as Docker's `inspect` shows it: `-1` for unlimited.
pub fn shown_limit(raw: u64) -> i64 {
    i64::try_from(raw).unwrap_or(-1)
}

/// The sysctls a container may set, as Docker (runc) allows them: those of the IPC,
/// UTS and network namespaces.
const NAMESPACED: &[&str] = &[
    "kernel.domainname",
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];
const NAMESPACED_PREFIXES: &[&str] = &["fs.mqueue.", "net."];

/// One `--sysctl KEY=VALUE`.
pub fn parse_sysctl(text: &str) -> Result<(String, String), TunableError> {
    let format = || TunableError::SysctlFormat(text.chars().take(140).collect());
    let (key, value) = text.split_once('=').ok_or_else(format)?;
    let well_formed = key.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if !well_formed || value.contains('\0') {
        return Err(format());
    }
    if !NAMESPACED.contains(&key) && !NAMESPACED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Err(TunableError::NotNamespaced(key.to_owned()));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_as_docker_parses_them() {
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        let u = parse_ulimit("core=-1").unwrap();
        assert_eq!((u.soft, u.hard), (u64::MAX, u64::MAX));
        assert_eq!(shown_limit(u.soft), -1);
        assert_eq!(
            parse_ulimit("nofile=2:1"),
            Err(TunableError::UlimitOrder { soft: 2, hard: 1 })
        );
        assert_eq!(parse_ulimit("bogus=1"), Err(TunableError::UlimitName("bogus".into())));
        for bad in ["nofile", "nofile=x", "nofile=1:2:3", "nofile=-2"] {
            assert!(matches!(parse_ulimit(bad), Err(TunableError::UlimitFormat(_))), "{bad}");
        }
    }

    #[test]
    fn only_namespaced_sysctls_are_taken() {
        assert_eq!(
            parse_sysctl("net.ipv4.ip_forward=1").unwrap(),
            ("net.ipv4.ip_forward".into(), "1".into())
        );
        assert!(parse_sysctl("kernel.shmmax=1000000").is_ok());
        assert_eq!(
            parse_sysctl("kernel.panic=1"),
            Err(TunableError::NotNamespaced("kernel.panic".into()))
        );
        for bad in ["net.ipv4", "net..x=1", "=1", "net/ipv4/x=1"] {
            assert!(matches!(parse_sysctl(bad), Err(TunableError::SysctlFormat(_))), "{bad}");
        }
    }
}
