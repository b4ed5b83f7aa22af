//! Docker's variable substitution and word processing (the shell-like lexer that
//! BuildKit applies to ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME
//! and WORKDIR): `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?w}`,
//! `${V?w}`, nested words, single and double quotes, and the escape character.

use std::collections::{BTreeMap, HashMap};

use super::{MAX_EXPANDED_BYTES, MAX_EXPANSION_DEPTH};

/// Where variable values come from.
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Lookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

struct NoVariables;

impl Lookup for NoVariables {
    fn lookup(&self, _: &str) -> Option<&str> {
        None
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Quotes and escapes processed, variables expanded.
    Word,
    /// Only variables expanded; quotes and escapes kept as written.
    Raw,
    /// Quotes and escapes processed, `$` kept literally.
    Unquote,
}

/// Expands and unquotes one word as Docker does for the instructions it substitutes in.
pub fn expand_word(text: &str, escape: char, vars: &dyn Lookup) -> Result<String, String> {
    Lexer::new(text, escape, vars, Mode::Word).run()
}

/// Expands variables only, keeping quotes and escapes (heredoc bodies of COPY/ADD).
pub(crate) fn expand_raw(text: &str, escape: char, vars: &dyn Lookup) -> Result<String, String> {
    Lexer::new(text, escape, vars, Mode::Raw).run()
}

/// Removes quotes and escapes without substituting (flag values, names).
pub(crate) fn unquote(text: &str, escape: char) -> Result<String, String> {
    Lexer::new(text, escape, &NoVariables, Mode::Unquote).run()
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Lookup,
    mode: Mode,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, escape: char, vars: &'a dyn Lookup, mode: Mode) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            escape,
            vars,
            mode,
        }
    }

    fn run(mut self) -> Result<String, String> {
        self.word(None, 0)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads up to `stop` (consumed) or the end.
    fn word(&mut self, stop: Option<char>, depth: usize) -> Result<String, String> {
        if depth > MAX_EXPANSION_DEPTH {
            return Err("substitutions nested too deeply".into());
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.next() else {
                return match stop {
                    Some(s) => Err(format!("missing '{s}'")),
                    None => Ok(out),
                };
            };
            match c {
                _ if Some(c) == stop => return Ok(out),
                '\'' if self.mode != Mode::Raw => self.single_quoted(&mut out)?,
                '"' if self.mode != Mode::Raw => self.double_quoted(&mut out, depth)?,
                '$' => self.dollar(&mut out, depth)?,
                _ if c == self.escape => self.escaped(&mut out),
                _ => out.push(c),
            }
            bounded(&out)?;
        }
    }

    fn escaped(&mut self, out: &mut String) {
        match self.next() {
            Some(n) if self.mode == Mode::Raw => {
                out.push(self.escape);
                out.push(n);
            }
            Some(n) => out.push(n),
            None => out.push(self.escape),
        }
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), String> {
        loop {
            match self.next() {
                Some('\'') => return Ok(()),
                Some(c) => out.push(c),
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut String, depth: usize) -> Result<(), String> {
        loop {
            match self.next() {
                Some('"') => return Ok(()),
                Some('$') => self.dollar(out, depth)?,
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                Some(c) => out.push(c),
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
            }
            bounded(out)?;
        }
    }

    fn dollar(&mut self, out: &mut String, depth: usize) -> Result<(), String> {
        if self.mode == Mode::Unquote {
            out.push('$');
            return Ok(());
        }
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                let value = self.braced(depth)?;
                out.push_str(&value);
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                let name = self.name();
                out.push_str(self.vars.lookup(&name).unwrap_or(""));
            }
            _ => out.push('$'),
        }
        Ok(())
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| *c == '_' || c.is_ascii_alphanumeric()) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// After `${`: the name, an optional modifier and its word, and `}`.
    fn braced(&mut self, depth: usize) -> Result<String, String> {
        let name = self.name();
        if name.is_empty() {
            return Err("bad substitution: ${ must be followed by a variable name".into());
        }
        let value = self.vars.lookup(&name).map(str::to_owned);
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let op = self.next().ok_or_else(|| format!("missing '}}' after ${{{name}"))?;
        if op == '}' && !colon {
            return Ok(value.unwrap_or_default());
        }
        if !matches!(op, '-' | '+' | '?') {
            return Err(format!("unsupported modifier {op:?} in ${{{name}...}}"));
        }
        let word = self.word(Some('}'), depth + 1)?;
        let set = match (&value, colon) {
            (Some(v), true) => !v.is_empty(),
            (Some(_), false) => true,
            (None, _) => false,
        };
        match op {
            '-' if set => Ok(value.unwrap_or_default()),
            '-' => Ok(word),
            '+' if set => Ok(word),
            '+' => Ok(String::new()),
            _ if set => Ok(value.unwrap_or_default()),
            _ if word.is_empty() => Err(format!("{name}: is not allowed to be unset")),
            _ => Err(format!("{name}: {word}")),
        }
    }
}

fn bounded(out: &str) -> Result<(), String> {
    if out.len() > MAX_EXPANDED_BYTES {
        return Err(format!("expansion longer than {MAX_EXPANDED_BYTES} bytes"));
    }
    Ok(())
}
