//! Splitting instruction arguments: words (quote- and escape-aware, kept as written),
//! leading `--flags`, and the JSON exec form.

use super::error::Problem;
use super::expand::unquote;

/// The next whitespace-separated word, quotes and escapes kept, and the rest after it.
pub(crate) fn next_word(text: &str, escape: char) -> Option<(String, &str)> {
    let text = text.trim_start();
    if text.is_empty() {
        return None;
    }
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match quote {
            None if c.is_whitespace() => return Some((word, &text[i..])),
            None if c == '\'' || c == '"' => quote = Some(c),
            Some(q) if c == q => quote = None,
            _ => {}
        }
        word.push(c);
        if c == escape && quote != Some('\'') {
            if let Some((_, n)) = chars.next() {
                word.push(n);
            }
        }
    }
    Some((word, ""))
}

/// All words of `text`, as written.
pub(crate) fn split_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut rest = text;
    while let Some((word, after)) = next_word(rest, escape) {
        words.push(word);
        rest = after;
    }
    words
}

/// Leading `--name[=value]` words (unquoted, without the dashes) and what follows them.
pub(crate) fn leading_flags(text: &str, escape: char) -> Result<(Vec<String>, &str), Problem> {
    let mut flags = Vec::new();
    let mut rest = text.trim_start();
    while let Some((word, after)) = next_word(rest, escape) {
        let Some(flag) = word.strip_prefix("--") else { break };
        rest = after.trim_start();
        if flag.is_empty() {
            break;
        }
        let flag = unquote(flag, escape).map_err(|reason| Problem::BadFlag {
            flag: flag.to_owned(),
            reason,
        })?;
        flags.push(flag);
    }
    Ok((flags, rest))
}

/// How a flag takes its value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    Text,
    Bool,
    /// May be given several times (`--mount`).
    List,
}

/// Flags checked against what an instruction accepts.
pub(crate) struct Flags {
    values: Vec<(&'static str, String)>,
}

impl Flags {
    pub(crate) fn check(
        instruction: &'static str,
        given: Vec<String>,
        accepted: &[(&'static str, FlagKind)],
    ) -> Result<Flags, Problem> {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for flag in given {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (flag.clone(), None),
            };
            let Some(&(known, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
                return Err(Problem::UnknownFlag {
                    instruction,
                    flag: name,
                });
            };
            let bad = |reason: &str| Problem::BadFlag {
                flag: known.to_owned(),
                reason: reason.to_owned(),
            };
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_owned(),
                (FlagKind::Bool, Some(v)) if v == "true" || v == "false" => v,
                (FlagKind::Bool, Some(_)) => return Err(bad("expecting true or false")),
                (_, None) => return Err(bad("missing a value")),
                (_, Some(v)) => v,
            };
            if kind != FlagKind::List && values.iter().any(|(n, _)| *n == known) {
                return Err(bad("given more than once"));
            }
            values.push((known, value));
        }
        Ok(Flags { values })
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }

    pub(crate) fn bool(&self, name: &str) -> bool {
        self.values.iter().any(|(n, v)| *n == name && v == "true")
    }

    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The exec form: a JSON array of strings. Anything else is shell form, as in Docker.
pub(crate) fn json_array(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(text).ok()
}
