//! `.dockerignore`: Docker's pattern rules (those of moby/patternmatcher).
//!
//! Each line is a pattern; `#` at the start of a line makes a comment; surrounding
//! whitespace is trimmed; `!` makes an exception. Patterns are cleaned like Go's
//! `filepath.Clean` and a leading `/` dropped. `*` and `?` do not cross `/`, `**`
//! crosses any number of directories, `[...]` is a class and `\` escapes. A pattern
//! that matches a directory excludes everything beneath it; the last matching
//! pattern wins.

use super::{MAX_DOCKERIGNORE_BYTES, MAX_PATTERN_CHARS};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore over {MAX_DOCKERIGNORE_BYTES} bytes")]
    TooLarge,
    #[error(".dockerignore:{line}: bad pattern {pattern:?}: {reason}")]
    BadPattern {
        line: usize,
        pattern: String,
        reason: &'static str,
    },
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnorePattern {
    /// The cleaned pattern, without `!`.
    pub text: String,
    /// A `!` exception: re-includes what it matches.
    pub exception: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` at the end: anything.
    Everything,
    /// `**/`, or `**` inside: any number of whole directories, possibly none.
    Dirs,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// The patterns of a `.dockerignore`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerIgnore {
    pub patterns: Vec<IgnorePattern>,
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            _ => parts.push(part),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

impl DockerIgnore {
    /// Reads `.dockerignore` text.
    pub fn parse(text: &str) -> Result<DockerIgnore, IgnoreError> {
        if text.len() > MAX_DOCKERIGNORE_BYTES {
            return Err(IgnoreError::TooLarge);
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let pattern = IgnorePattern::new(line).map_err(|reason| IgnoreError::BadPattern {
                line: i + 1,
                pattern: line.to_owned(),
                reason,
            })?;
            if let Some(p) = pattern {
                patterns.push(p);
            }
        }
        Ok(DockerIgnore { patterns })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is left out of the
    /// context: by a pattern matching it or one of its parent directories.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path.trim_start_matches('/'));
        let parents: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for pattern in &self.patterns {
            if pattern.exception != excluded {
                continue;
            }
            let hit = pattern.matches(&path) || (1..parents.len()).any(|n| pattern.matches(&parents[..n].join("/")));
            if hit {
                excluded = !pattern.exception;
            }
        }
        excluded
    }

    /// Whether an excluded directory must still be walked: an exception might
    /// re-include something beneath it. Conservative: true when unsure.
    pub fn must_walk(&self, dir: &str) -> bool {
        let dir = clean(dir.trim_start_matches('/'));
        let parts: Vec<&str> = dir.split('/').collect();
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| p.may_match_below(&parts))
    }

    /// Docker's rule that the Dockerfile and `.dockerignore` always reach the builder:
    /// exceptions for both are added after the user's patterns.
    pub fn keeping_build_files(mut self, dockerfile: &str) -> DockerIgnore {
        for keep in [dockerfile, ".dockerignore"] {
            if self.is_excluded(keep) {
                if let Ok(Some(p)) = IgnorePattern::new(&format!("!{keep}")) {
                    self.patterns.push(p);
                }
            }
        }
        self
    }
}

/// Whether `path` is one of the files Docker always sends, ignore patterns or not:
/// the Dockerfile (at its context-relative path) and `.dockerignore`.
pub fn always_sent(path: &str, dockerfile: &str) -> bool {
    let path = clean(path.trim_start_matches('/'));
    path == clean(dockerfile.trim_start_matches('/')) || path == ".dockerignore"
}

impl IgnorePattern {
    /// Compiles one trimmed line; `None` for a pattern that cleans to nothing.
    pub fn new(line: &str) -> Result<Option<IgnorePattern>, &'static str> {
        let (exception, body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        if body.is_empty() {
            return Ok(None);
        }
        if body.chars().count() > MAX_PATTERN_CHARS {
            return Err("longer than 4096 characters");
        }
        let mut text = clean(body);
        if text.len() > 1 && text.starts_with('/') {
            text.remove(0);
        }
        let tokens = compile(&text)?;
        Ok(Some(IgnorePattern {
            text,
            exception,
            tokens,
        }))
    }

    /// Whether the pattern matches exactly this cleaned path.
    pub fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        let mut memo = vec![None; (self.tokens.len() + 1) * (chars.len() + 1)];
        matches_at(&self.tokens, &chars, 0, 0, &mut memo)
    }

    /// Whether the pattern could match `dir/...` for some suffix.
    fn may_match_below(&self, dir: &[&str]) -> bool {
        let segments: Vec<&str> = self.text.split('/').collect();
        for (i, part) in dir.iter().enumerate() {
            let Some(seg) = segments.get(i) else { return true };
            if seg.contains("**") {
                return true;
            }
            let Ok(seg_tokens) = compile(seg) else { return true };
            let one = IgnorePattern {
                text: seg.to_string(),
                exception: true,
                tokens: seg_tokens,
            };
            if !one.matches(part) {
                return false;
            }
        }
        true
    }
}

fn compile(text: &str) -> Result<Vec<Token>, &'static str> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Everything
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => {
                let next = chars.get(i).ok_or("ends with an escape")?;
                tokens.push(Token::Char(*next));
                i += 1;
            }
            '[' => {
                let (token, used) = class(&chars[i..])?;
                tokens.push(token);
                i += used;
            }
            _ => tokens.push(Token::Char(c)),
        }
    }
    Ok(tokens)
}

/// A `[...]` class after its `[`; returns the token and the characters used.
fn class(chars: &[char]) -> Result<(Token, usize), &'static str> {
    let mut i = 0;
    let negated = matches!(chars.first(), Some('^') | Some('!'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let mut c = *chars.get(i).ok_or("unterminated [")?;
        i += 1;
        if c == ']' && !first {
            return Ok((Token::Class { negated, ranges }, i));
        }
        first = false;
        if c == '\\' {
            c = *chars.get(i).ok_or("unterminated [")?;
            i += 1;
        }
        let mut hi = c;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|n| *n != ']') {
            hi = chars[i + 1];
            i += 2;
            if hi == '\\' {
                hi = *chars.get(i).ok_or("unterminated [")?;
                i += 1;
            }
        }
        if hi < c {
            return Err("bad range in [");
        }
        ranges.push((c, hi));
    }
}

/// Memoised match of `tokens[t..]` against `path[p..]`: O(tokens x chars).
fn matches_at(tokens: &[Token], path: &[char], t: usize, p: usize, memo: &mut [Option<bool>]) -> bool {
    let key = t * (path.len() + 1) + p;
    if let Some(done) = memo.get(key).copied().flatten() {
        return done;
    }
    let result = match tokens.get(t) {
        None => p == path.len(),
        Some(Token::Everything) => true,
        Some(Token::Star) => {
            matches_at(tokens, path, t + 1, p, memo)
                || (p < path.len() && path[p] != '/' && matches_at(tokens, path, t, p + 1, memo))
        }
        Some(Token::Dirs) => {
            // Zero directories, or skip through the next `/` and try again.
            matches_at(tokens, path, t + 1, p, memo)
                || path[p..]
                    .iter()
                    .position(|c| *c == '/')
                    .is_some_and(|slash| matches_at(tokens, path, t, p + slash + 1, memo))
        }
        Some(single) => {
            p < path.len() && single_matches(single, path[p]) && matches_at(tokens, path, t + 1, p + 1, memo)
        }
    };
    if let Some(slot) = memo.get_mut(key) {
        *slot = Some(result);
    }
    result
}

fn single_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Char(x) => *x == c,
        Token::One => c != '/',
        Token::Class { negated, ranges } => {
            c != '/' && (ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated)
        }
        _ => false,
    }
}
