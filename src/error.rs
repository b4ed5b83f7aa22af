//! hull's error convention. Each module has its own `thiserror` enum. A variant's
//! message says what failed, naming the object (a path, a digest, a container), and
//! never repeats its cause: the cause is the variant's `#[source]`, and whoever prints
//! the error prints the whole chain once, with [`error_chain`] or anyhow's `{:#}`
//! (which `hull` uses for every error it reports).

/// The error and all its causes on one line, as `hull` prints them.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        line.push_str(": ");
        line.push_str(&e.to_string());
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("volume data: create /v/x")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_prints_each_cause_once() {
        let e = Outer(std::io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(
            error_chain(&e),
            "volume data: create /v/x: Permission denied (os error 13)"
        );
        assert_eq!(
            format!("{:#}", anyhow::Error::new(e)),
            "volume data: create /v/x: Permission denied (os error 13)"
        );
    }
}
