//! Text to instructions: parser directives, comments, continuations, heredocs, and
//! each instruction's arguments and flags.

use std::time::Duration;

use super::error::{DockerfileError, Problem};
use super::expand::unquote;
use super::instruction::*;
use super::words::{json_array, leading_flags, next_word, split_words, FlagKind, Flags};
use super::{MAX_DOCKERFILE_BYTES, MAX_INSTRUCTIONS, MAX_LINE_BYTES};

/// A parsed Dockerfile: instructions as written, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name errors use (`Dockerfile`, `build/Dockerfile.dev`).
    pub file: String,
    /// From `# escape=`; `\` by default.
    pub escape: char,
    /// From `# syntax=`, recorded and otherwise ignored.
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// Parses `text`, naming `file` in errors.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, DockerfileError> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(DockerfileError::File {
            file: file.to_owned(),
            problem: Problem::TooLarge("Dockerfile over 4 MiB"),
        });
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut reader = Reader {
        file,
        lines,
        pos: 0,
        escape: '\\',
    };
    let syntax = reader.directives()?;
    let mut instructions = Vec::new();
    while let Some(logical) = reader.logical_line()? {
        if instructions.len() >= MAX_INSTRUCTIONS {
            return Err(reader.error(logical.line, Problem::TooLarge("more than 10000 instructions")));
        }
        instructions.push(reader.instruction(logical)?);
    }
    Ok(Dockerfile {
        file: file.to_owned(),
        escape: reader.escape,
        syntax,
        instructions,
    })
}

/// One instruction's text with its continuations joined.
struct Logical {
    line: usize,
    end_line: usize,
    text: String,
}

/// A heredoc named on an instruction line, before its body is read.
struct HeredocSpec {
    word: String,
    name: String,
    expand: bool,
    strip_tabs: bool,
    fd: Option<u32>,
}

struct Reader<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    /// Index of the next unread line.
    pos: usize,
    escape: char,
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// `# name = value`, as a directive, if it is one.
fn directive(line: &str) -> Option<(String, &str)> {
    let body = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let (name, value) = body.split_once('=')?;
    let name = name.trim_end_matches([' ', '\t']);
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim_matches([' ', '\t']);
    (!value.is_empty()).then(|| (name.to_ascii_lowercase(), value))
}

impl<'a> Reader<'a> {
    fn error(&self, line: usize, problem: Problem) -> DockerfileError {
        DockerfileError::Line {
            file: self.file.to_owned(),
            line,
            problem,
        }
    }

    /// Reads the parser directives at the top; returns `syntax=`.
    fn directives(&mut self) -> Result<Option<String>, DockerfileError> {
        let mut seen: Vec<String> = Vec::new();
        let mut syntax = None;
        while let Some(line) = self.lines.get(self.pos) {
            let Some((name, value)) = directive(line) else { break };
            if !matches!(name.as_str(), "escape" | "syntax" | "check") {
                break;
            }
            if seen.contains(&name) {
                return Err(self.error(self.pos + 1, Problem::DuplicateDirective(name)));
            }
            match name.as_str() {
                "escape" => {
                    self.escape = match value {
                        "\\" => '\\',
                        "`" => '`',
                        _ => return Err(self.error(self.pos + 1, Problem::BadEscape(value.to_owned()))),
                    }
                }
                "syntax" => syntax = Some(value.to_owned()),
                _ => {}
            }
            seen.push(name);
            self.pos += 1;
        }
        Ok(syntax)
    }

    /// Strips a trailing escape character (and whitespace after it): true if it continues.
    fn continues<'l>(&self, line: &'l str) -> (&'l str, bool) {
        let trimmed = line.trim_end_matches([' ', '\t']);
        match trimmed.strip_suffix(self.escape) {
            Some(body) => (body, true),
            None => (line, false),
        }
    }

    fn logical_line(&mut self) -> Result<Option<Logical>, DockerfileError> {
        while let Some(line) = self.lines.get(self.pos) {
            if line.trim().is_empty() || is_comment(line) {
                self.pos += 1;
                continue;
            }
            let start = self.pos + 1;
            let (body, mut more) = self.continues(line.trim_start());
            let mut text = body.to_owned();
            self.pos += 1;
            while more {
                let Some(next) = self.lines.get(self.pos) else { break };
                self.pos += 1;
                if is_comment(next) || next.trim().is_empty() {
                    continue;
                }
                let (body, again) = self.continues(next);
                text.push_str(body);
                more = again;
                if text.len() > MAX_LINE_BYTES {
                    return Err(self.error(start, Problem::TooLarge("logical line over 1 MiB")));
                }
            }
            return Ok(Some(Logical {
                line: start,
                end_line: self.pos,
                text,
            }));
        }
        Ok(None)
    }

    fn instruction(&mut self, logical: Logical) -> Result<Instruction, DockerfileError> {
        let line = logical.line;
        let (keyword, rest) = split_keyword(&logical.text);
        let specs = heredoc_specs(&keyword, rest, self.escape).map_err(|p| self.error(line, p))?;
        let heredocs = self.heredoc_bodies(line, specs)?;
        let end_line = self.pos.max(logical.end_line);
        let mut command = command(&keyword, rest, heredocs, self.escape).map_err(|p| self.error(line, p))?;
        if let Command::Onbuild(trigger) = &mut command {
            trigger.line = line;
            trigger.end_line = end_line;
        }
        Ok(Instruction {
            line,
            end_line,
            command,
        })
    }

    fn heredoc_bodies(
        &mut self,
        line: usize,
        specs: Vec<HeredocSpec>,
    ) -> Result<Vec<(String, Heredoc)>, DockerfileError> {
        let mut heredocs = Vec::with_capacity(specs.len());
        for spec in specs {
            let mut content = String::new();
            loop {
                let Some(body) = self.lines.get(self.pos) else {
                    return Err(self.error(line, Problem::UnterminatedHeredoc { name: spec.name }));
                };
                self.pos += 1;
                let body = if spec.strip_tabs {
                    body.trim_start_matches('\t')
                } else {
                    body
                };
                if body == spec.name {
                    break;
                }
                content.push_str(body);
                content.push('\n');
            }
            let heredoc = Heredoc {
                name: spec.name,
                content,
                expand: spec.expand,
                strip_tabs: spec.strip_tabs,
                fd: spec.fd,
            };
            heredocs.push((spec.word, heredoc));
        }
        Ok(heredocs)
    }
}

fn split_keyword(text: &str) -> (String, &str) {
    let text = text.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    (text[..end].to_ascii_lowercase(), &text[end..])
}

/// The heredocs an instruction names: only RUN, COPY, ADD (also behind ONBUILD), shell form.
fn heredoc_specs(keyword: &str, rest: &str, escape: char) -> Result<Vec<HeredocSpec>, Problem> {
    let (keyword, rest) = match keyword {
        "onbuild" => split_keyword(rest),
        _ => (keyword.to_owned(), rest),
    };
    if !matches!(keyword.as_str(), "run" | "copy" | "add") {
        return Ok(Vec::new());
    }
    let (_, args) = leading_flags(rest, escape)?;
    if json_array(args).is_some() {
        return Ok(Vec::new());
    }
    Ok(split_words(args, escape)
        .into_iter()
        .filter_map(|w| heredoc_spec(&w, escape))
        .collect())
}

/// `[fd]<<[-]NAME`, `<<'NAME'`, `<<"NAME"`.
fn heredoc_spec(word: &str, escape: char) -> Option<HeredocSpec> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let fd = if digits > 0 {
        Some(word[..digits].parse().ok()?)
    } else {
        None
    };
    let after = word[digits..].strip_prefix("<<")?;
    let (strip_tabs, raw) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if raw.is_empty() || raw.contains('<') {
        return None;
    }
    let quoted = raw.contains(['\'', '"']);
    let name = unquote(raw, escape).ok()?;
    if name.is_empty() {
        return None;
    }
    Some(HeredocSpec {
        word: word.to_owned(),
        name,
        expand: !quoted,
        strip_tabs,
        fd,
    })
}

type Heredocs = Vec<(String, Heredoc)>;

fn command(keyword: &str, rest: &str, heredocs: Heredocs, escape: char) -> Result<Command, Problem> {
    let (flags, args) = leading_flags(rest, escape)?;
    let args = args.trim();
    let no_flags = |name: &'static str| Flags::check(name, flags.clone(), &[]).map(|_| ());
    Ok(match keyword {
        "from" => Command::From(from(
            Flags::check("FROM", flags, &[("platform", FlagKind::Text)])?,
            args,
        )?),
        "run" => Command::Run(run(flags, args, heredocs)?),
        "cmd" => {
            no_flags("CMD")?;
            Command::Cmd(command_line("CMD", args)?)
        }
        "entrypoint" => {
            no_flags("ENTRYPOINT")?;
            Command::Entrypoint(command_line("ENTRYPOINT", args)?)
        }
        "shell" => {
            no_flags("SHELL")?;
            Command::Shell(shell(args)?)
        }
        "copy" => Command::Copy(copy(flags, args, heredocs, escape)?),
        "add" => Command::Add(add(flags, args, heredocs, escape)?),
        "env" => {
            no_flags("ENV")?;
            Command::Env(name_values("ENV", args, escape)?)
        }
        "label" => {
            no_flags("LABEL")?;
            Command::Label(name_values("LABEL", args, escape)?)
        }
        "arg" => {
            no_flags("ARG")?;
            Command::Arg(arg(args, escape)?)
        }
        "expose" => {
            no_flags("EXPOSE")?;
            Command::Expose(at_least_one("EXPOSE", split_words(args, escape))?)
        }
        "volume" => {
            no_flags("VOLUME")?;
            let paths = json_array(args).unwrap_or_else(|| split_words(args, escape));
            Command::Volume(at_least_one("VOLUME", paths)?)
        }
        "user" => {
            no_flags("USER")?;
            user(args, escape)?
        }
        "workdir" => {
            no_flags("WORKDIR")?;
            Command::Workdir(one_text("WORKDIR", args)?)
        }
        "stopsignal" => {
            no_flags("STOPSIGNAL")?;
            Command::StopSignal(one_word("STOPSIGNAL", args, escape)?)
        }
        "maintainer" => {
            no_flags("MAINTAINER")?;
            Command::Maintainer(one_text("MAINTAINER", args)?)
        }
        "healthcheck" => Command::Healthcheck(healthcheck(flags, args)?),
        "onbuild" => Command::Onbuild(Box::new(onbuild(rest, heredocs, escape)?)),
        _ => return Err(Problem::UnknownInstruction(keyword.to_ascii_uppercase())),
    })
}

fn at_least_one(instruction: &'static str, words: Vec<String>) -> Result<Vec<String>, Problem> {
    if words.is_empty() {
        return Err(Problem::Arguments {
            instruction,
            expected: "at least one argument",
        });
    }
    Ok(words)
}

fn one_text(instruction: &'static str, args: &str) -> Result<String, Problem> {
    if args.is_empty() {
        return Err(Problem::Arguments {
            instruction,
            expected: "exactly one argument",
        });
    }
    Ok(args.to_owned())
}

fn one_word(instruction: &'static str, args: &str, escape: char) -> Result<String, Problem> {
    match split_words(args, escape).as_slice() {
        [word] => Ok(word.clone()),
        _ => Err(Problem::Arguments {
            instruction,
            expected: "exactly one argument",
        }),
    }
}

fn from(flags: Flags, args: &str) -> Result<From, Problem> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let (image, name) = match words.as_slice() {
        [image] => (*image, None),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => (*image, Some(name.to_ascii_lowercase())),
        _ => {
            return Err(Problem::Arguments {
                instruction: "FROM",
                expected: "either one argument, or three: image AS name",
            })
        }
    };
    if let Some(name) = &name {
        if !valid_stage_name(name) {
            return Err(Problem::BadStageName(name.clone()));
        }
    }
    Ok(From {
        image: image.to_owned(),
        name,
        platform: flags.text("platform"),
    })
}

pub(crate) fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn command_line(instruction: &'static str, args: &str) -> Result<CommandLine, Problem> {
    if let Some(exec) = json_array(args) {
        return Ok(CommandLine::Exec(exec));
    }
    if args.is_empty() {
        return Err(Problem::Arguments {
            instruction,
            expected: "at least one argument",
        });
    }
    Ok(CommandLine::Shell(args.to_owned()))
}

fn shell(args: &str) -> Result<Vec<String>, Problem> {
    match json_array(args) {
        Some(words) if !words.is_empty() => Ok(words),
        _ => Err(Problem::Invalid {
            instruction: "SHELL",
            reason: "requires the arguments in JSON form, e.g. [\"/bin/sh\", \"-c\"]".into(),
        }),
    }
}

fn run(flags: Vec<String>, args: &str, heredocs: Heredocs) -> Result<Run, Problem> {
    let accepted = [
        ("mount", FlagKind::List),
        ("network", FlagKind::Text),
        ("security", FlagKind::Text),
    ];
    let flags = Flags::check("RUN", flags, &accepted)?;
    let mounts = flags.list("mount").iter().map(|m| mount(m)).collect::<Result<_, _>>()?;
    let network = flags.text("network").map(|n| network(&n)).transpose()?;
    let security = flags.text("security").map(|s| security(&s)).transpose()?;
    let command = command_line("RUN", args)?;
    let heredocs = heredocs.into_iter().map(|(_, h)| h).collect();
    Ok(Run {
        command,
        heredocs,
        mounts,
        network,
        security,
        build_args: Vec::new(),
    })
}

fn network(value: &str) -> Result<Network, Problem> {
    match value {
        "default" => Ok(Network::Default),
        "none" => Ok(Network::None),
        "host" => Ok(Network::Host),
        _ => Err(Problem::BadFlag {
            flag: "network".into(),
            reason: format!("{value:?}: expected default, none or host"),
        }),
    }
}

fn security(value: &str) -> Result<Security, Problem> {
    match value {
        "sandbox" => Ok(Security::Sandbox),
        "insecure" => Ok(Security::Insecure),
        _ => Err(Problem::BadFlag {
            flag: "security".into(),
            reason: format!("{value:?}: expected sandbox or insecure"),
        }),
    }
}

fn mount_problem(reason: String) -> Problem {
    Problem::BadFlag {
        flag: "mount".into(),
        reason,
    }
}

/// `--mount=type=cache,target=/x,...`.
pub(crate) fn mount(spec: &str) -> Result<Mount, Problem> {
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        env: None,
        size: None,
    };
    let mut rw_given = false;
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        mount_field(&mut m, &key, value, &mut rw_given)?;
    }
    if m.kind == MountType::Bind && !rw_given {
        m.readonly = true;
    }
    let needs_target = matches!(m.kind, MountType::Bind | MountType::Cache | MountType::Tmpfs);
    if needs_target && m.target.is_none() {
        return Err(mount_problem(format!("{spec:?}: target is required")));
    }
    Ok(m)
}

fn mount_field(m: &mut Mount, key: &str, value: Option<&str>, rw_given: &mut bool) -> Result<(), Problem> {
    let text = || {
        value
            .map(str::to_owned)
            .ok_or_else(|| mount_problem(format!("{key} needs a value")))
    };
    let number = |radix: u32| -> Result<u32, Problem> {
        let v = text()?;
        u32::from_str_radix(&v, radix).map_err(|_| mount_problem(format!("{key}={v}: not a number")))
    };
    match key {
        "type" => m.kind = mount_type(&text()?)?,
        "target" | "dst" | "destination" => m.target = Some(text()?),
        "source" | "src" => m.source = Some(text()?),
        "from" => m.from = Some(text()?),
        "id" => m.id = Some(text()?),
        "env" => m.env = Some(text()?),
        "mode" => m.mode = Some(number(8)?),
        "uid" => m.uid = Some(number(10)?),
        "gid" => m.gid = Some(number(10)?),
        "size" => m.size = Some(byte_size(&text()?)?),
        "sharing" => m.sharing = Some(sharing(&text()?)?),
        "readonly" | "ro" => {
            m.readonly = flag_bool(key, value)?;
            *rw_given = true;
        }
        "readwrite" | "rw" => {
            m.readonly = !flag_bool(key, value)?;
            *rw_given = true;
        }
        "required" => m.required = flag_bool(key, value)?,
        _ => return Err(mount_problem(format!("unexpected key {key:?}"))),
    }
    Ok(())
}

fn flag_bool(key: &str, value: Option<&str>) -> Result<bool, Problem> {
    match value {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(mount_problem(format!("{key}={v}: expected true or false"))),
    }
}

fn mount_type(value: &str) -> Result<MountType, Problem> {
    Ok(match value {
        "bind" => MountType::Bind,
        "cache" => MountType::Cache,
        "tmpfs" => MountType::Tmpfs,
        "secret" => MountType::Secret,
        "ssh" => MountType::Ssh,
        _ => return Err(mount_problem(format!("unknown mount type {value:?}"))),
    })
}

fn sharing(value: &str) -> Result<Sharing, Problem> {
    Ok(match value {
        "shared" => Sharing::Shared,
        "private" => Sharing::Private,
        "locked" => Sharing::Locked,
        _ => return Err(mount_problem(format!("unknown sharing {value:?}"))),
    })
}

fn byte_size(value: &str) -> Result<u64, Problem> {
    let lower = value.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, unit) = match lower.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => lower.split_at(i),
        None => (lower, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        _ => return Err(mount_problem(format!("size={value}: unknown unit"))),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| mount_problem(format!("size={value}: not a size")))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| mount_problem(format!("size={value}: too large")))
}

/// COPY/ADD arguments: sources (heredocs substituted) and the destination.
fn sources_and_dest(
    instruction: &'static str,
    args: &str,
    heredocs: Heredocs,
    escape: char,
) -> Result<(Vec<Source>, String, bool), Problem> {
    let (mut words, exec_form) = match json_array(args) {
        Some(words) => (words, true),
        None => (split_words(args, escape), false),
    };
    let Some(dest) = words.pop().filter(|_| !words.is_empty()) else {
        return Err(Problem::Arguments {
            instruction,
            expected: "at least two arguments: source(s) and destination",
        });
    };
    let mut heredocs = heredocs;
    let sources = words
        .into_iter()
        .map(|w| match heredocs.iter().position(|(word, _)| *word == w) {
            Some(i) => Source::Heredoc(heredocs.remove(i).1),
            None => Source::Path(w),
        })
        .collect();
    Ok((sources, dest, exec_form))
}

fn copy(flags: Vec<String>, args: &str, heredocs: Heredocs, escape: char) -> Result<Copy, Problem> {
    let accepted = [
        ("from", FlagKind::Text),
        ("chown", FlagKind::Text),
        ("chmod", FlagKind::Text),
        ("link", FlagKind::Bool),
    ];
    let flags = Flags::check("COPY", flags, &accepted)?;
    let (sources, dest, exec_form) = sources_and_dest("COPY", args, heredocs, escape)?;
    Ok(Copy {
        sources,
        dest,
        from: flags.text("from"),
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        link: flags.bool("link"),
        exec_form,
    })
}

fn add(flags: Vec<String>, args: &str, heredocs: Heredocs, escape: char) -> Result<Add, Problem> {
    let accepted = [
        ("chown", FlagKind::Text),
        ("chmod", FlagKind::Text),
        ("checksum", FlagKind::Text),
        ("link", FlagKind::Bool),
        ("keep-git-dir", FlagKind::Bool),
    ];
    let flags = Flags::check("ADD", flags, &accepted)?;
    let (sources, dest, exec_form) = sources_and_dest("ADD", args, heredocs, escape)?;
    Ok(Add {
        sources,
        dest,
        chown: flags.text("chown"),
        chmod: flags.text("chmod"),
        checksum: flags.text("checksum"),
        link: flags.bool("link"),
        exec_form,
    })
}

/// ENV and LABEL: `k=v k2="v 2"`, or the old `k v w` form (the value is the rest).
fn name_values(instruction: &'static str, args: &str, escape: char) -> Result<Vec<(String, String)>, Problem> {
    let words = split_words(args, escape);
    let Some(first) = words.first() else {
        return Err(Problem::Arguments {
            instruction,
            expected: "at least one name=value pair",
        });
    };
    if !first.contains('=') {
        let value = next_word(args, escape).map(|(_, rest)| rest.trim()).unwrap_or("");
        if value.is_empty() {
            return Err(Problem::Arguments {
                instruction,
                expected: "two arguments (name value) or name=value pairs",
            });
        }
        return Ok(vec![(first.clone(), value.to_owned())]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(Problem::Invalid {
                instruction,
                reason: format!("{w:?}: names can not be blank"),
            }),
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => Err(Problem::Invalid {
                instruction,
                reason: format!("can't find = in {w:?}: must be of the form name=value"),
            }),
        })
        .collect()
}

fn arg(args: &str, escape: char) -> Result<Vec<ArgDecl>, Problem> {
    let words = at_least_one("ARG", split_words(args, escape))?;
    words
        .into_iter()
        .map(|w| {
            let (name, default) = match w.split_once('=') {
                Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
                None => (w.clone(), None),
            };
            if name.is_empty() {
                return Err(Problem::Invalid {
                    instruction: "ARG",
                    reason: format!("{w:?}: names can not be blank"),
                });
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

fn user(args: &str, escape: char) -> Result<Command, Problem> {
    let word = one_word("USER", args, escape)?;
    Ok(match word.split_once(':') {
        Some((user, group)) => Command::User {
            user: user.to_owned(),
            group: Some(group.to_owned()),
        },
        None => Command::User {
            user: word,
            group: None,
        },
    })
}

fn healthcheck(flags: Vec<String>, args: &str) -> Result<Healthcheck, Problem> {
    let (kind, rest) = split_keyword(args);
    match kind.as_str() {
        "none" if rest.trim().is_empty() && flags.is_empty() => Ok(Healthcheck::None),
        "none" => Err(Problem::Invalid {
            instruction: "HEALTHCHECK",
            reason: "NONE takes no other arguments".into(),
        }),
        "cmd" => {
            let accepted = [
                ("interval", FlagKind::Text),
                ("timeout", FlagKind::Text),
                ("start-period", FlagKind::Text),
                ("start-interval", FlagKind::Text),
                ("retries", FlagKind::Text),
            ];
            let flags = Flags::check("HEALTHCHECK", flags, &accepted)?;
            let command = command_line("HEALTHCHECK", rest.trim())?;
            Ok(Healthcheck::Check {
                command,
                options: health_options(&flags)?,
            })
        }
        _ => Err(Problem::Invalid {
            instruction: "HEALTHCHECK",
            reason: "expected NONE or CMD".into(),
        }),
    }
}

fn health_options(flags: &Flags) -> Result<HealthcheckOptions, Problem> {
    let duration = |name: &str| -> Result<Option<Duration>, Problem> {
        flags
            .text(name)
            .map(|v| {
                go_duration(&v).ok_or_else(|| Problem::BadFlag {
                    flag: name.into(),
                    reason: format!("{v:?} is not a duration like 30s or 1m30s"),
                })
            })
            .transpose()
    };
    let retries = flags
        .text("retries")
        .map(|v| {
            v.parse::<u32>().map_err(|_| Problem::BadFlag {
                flag: "retries".into(),
                reason: format!("{v:?} is not a count"),
            })
        })
        .transpose()?;
    Ok(HealthcheckOptions {
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

/// A Go duration: `300ms`, `1.5h`, `2h45m`, `0`.
pub(crate) fn go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    (total.is_finite() && total < 1e12 && !text.is_empty()).then(|| Duration::from_secs_f64(total))
}

fn onbuild(rest: &str, heredocs: Heredocs, escape: char) -> Result<Instruction, Problem> {
    let (keyword, inner) = split_keyword(rest);
    match keyword.as_str() {
        "" => Err(Problem::Arguments {
            instruction: "ONBUILD",
            expected: "an instruction to trigger",
        }),
        "onbuild" => Err(Problem::Invalid {
            instruction: "ONBUILD",
            reason: "chaining ONBUILD via ONBUILD ONBUILD isn't allowed".into(),
        }),
        "from" | "maintainer" => Err(Problem::Invalid {
            instruction: "ONBUILD",
            reason: format!("{} isn't allowed as an ONBUILD trigger", keyword.to_ascii_uppercase()),
        }),
        _ => Ok(Instruction {
            line: 0,
            end_line: 0,
            command: command(&keyword, inner, heredocs, escape)?,
        }),
    }
}
