//! One build of a parsed Dockerfile: build-args, ARG/ENV scoping, substitution, the
//! stage list and the target.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::error::{DockerfileError, Problem};
use super::expand::{expand_raw, expand_word, Lookup};
use super::instruction::*;
use super::parse::Dockerfile;
use super::MAX_RESOLVED_BYTES;

/// ARGs Docker defines without an ARG line, usable in every stage when given as
/// build-args.
pub const PREDEFINED_PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform hull runs on (and builds for by default).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }

    fn text(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.arch),
            None => format!("{}/{}", self.os, self.arch),
        }
    }

    /// `PREFIXPLATFORM`, `PREFIXOS`, `PREFIXARCH`, `PREFIXVARIANT`.
    fn args(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}PLATFORM"), self.text()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.arch.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone().unwrap_or_default()),
        ]
    }
}

/// What one build asks of the Dockerfile.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `--build-arg`: overrides ARG defaults; only declared ARGs (and the proxy ARGs) take effect.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last one if `None`.
    pub target: Option<String>,
    pub build_platform: Platform,
    pub target_platform: Platform,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            build_args: BTreeMap::new(),
            target: None,
            build_platform: Platform::host(),
            target_platform: Platform::host(),
        }
    }
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageBase {
    Scratch,
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// What `COPY --from=` or `RUN --mount=from=` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRef {
    Stage(usize),
    Image(String),
}

/// A build stage with its instructions expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    pub name: Option<String>,
    /// Line of its FROM.
    pub line: usize,
    pub base: StageBase,
    /// `FROM --platform=`, expanded.
    pub platform: Option<String>,
    /// The instructions after FROM; ARG and ENV included (the image records them).
    pub instructions: Vec<Instruction>,
    /// ENV at the stage's end, the base's environment first.
    pub env: Vec<(String, String)>,
    /// Earlier stages this one needs (its base, `COPY --from`, `RUN --mount=from=`).
    pub depends_on: Vec<usize>,
}

/// The stages of one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Stages up to and including the target.
    pub stages: Vec<Stage>,
    pub target: usize,
    /// Build-args no ARG declared (Docker warns about these).
    pub unused_build_args: Vec<String>,
}

impl Resolved {
    /// The stages the target needs, in build order.
    pub fn needed(&self) -> Vec<usize> {
        let mut need = vec![false; self.stages.len()];
        let mut todo = vec![self.target];
        while let Some(i) = todo.pop() {
            if i < need.len() && !need[i] {
                need[i] = true;
                todo.extend(self.stages[i].depends_on.iter().copied());
            }
        }
        (0..need.len()).filter(|&i| need[i]).collect()
    }

    /// Resolves `--from=` text as seen from stage `current`.
    pub fn from_ref(&self, text: &str, current: usize) -> FromRef {
        stage_ref(&self.stages, text, current)
            .ok()
            .flatten()
            .map_or_else(|| FromRef::Image(text.to_owned()), FromRef::Stage)
    }
}

/// Variables in declaration order, found by name in constant time.
#[derive(Default, Clone)]
struct Vars {
    list: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Vars {
    fn from_list(list: Vec<(String, String)>) -> Vars {
        let mut vars = Vars::default();
        for (k, v) in list {
            vars.set(&k, v);
        }
        vars
    }

    /// Replaces a value in place, or appends a new variable.
    fn set(&mut self, name: &str, value: String) {
        match self.index.get(name) {
            Some(&i) => self.list[i].1 = value,
            None => {
                self.index.insert(name.to_owned(), self.list.len());
                self.list.push((name.to_owned(), value));
            }
        }
    }

    fn bytes(&self) -> usize {
        self.list.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

impl Lookup for Vars {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.list[i].1.as_str())
    }
}

/// ENV over ARG: the variables an instruction sees.
struct Scope<'a> {
    env: &'a Vars,
    args: &'a Vars,
}

impl Lookup for Scope<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.lookup(name).or_else(|| self.args.lookup(name))
    }
}

struct Resolver<'a> {
    df: &'a Dockerfile,
    opts: &'a BuildOptions,
    image_env: &'a dyn Fn(&str) -> Vec<(String, String)>,
    /// Global ARGs (before the first FROM), platform ARGs included.
    globals: Vars,
    declared: HashSet<String>,
    stages: Vec<Stage>,
    /// Bytes produced by substitution and copied between scopes so far.
    spent: Cell<usize>,
}

/// Expands `df` for one build. `image_env` gives the environment of a base image (the
/// executor reads it from the image config; return nothing if unknown).
pub fn resolve(
    df: &Dockerfile,
    opts: &BuildOptions,
    image_env: &dyn Fn(&str) -> Vec<(String, String)>,
) -> Result<Resolved, DockerfileError> {
    let first_from = df
        .instructions
        .iter()
        .position(|i| matches!(i.command, Command::From(_)));
    let Some(first_from) = first_from else {
        return Err(DockerfileError::File {
            file: df.file.clone(),
            problem: Problem::NoFrom,
        });
    };
    let mut platform = opts.build_platform.args("BUILD");
    platform.extend(opts.target_platform.args("TARGET"));
    let globals = Vars::from_list(platform);
    let mut r = Resolver {
        df,
        opts,
        image_env,
        globals,
        declared: HashSet::new(),
        stages: Vec::new(),
        spent: Cell::new(0),
    };
    for ins in &df.instructions[..first_from] {
        r.global(ins)?;
    }
    let mut start = first_from;
    while start < df.instructions.len() {
        let end = df.instructions[start + 1..]
            .iter()
            .position(|i| matches!(i.command, Command::From(_)))
            .map_or(df.instructions.len(), |p| start + 1 + p);
        r.stage(&df.instructions[start], &df.instructions[start + 1..end])?;
        start = end;
    }
    r.finish()
}

impl Resolver<'_> {
    fn error(&self, line: usize, problem: Problem) -> DockerfileError {
        DockerfileError::Line {
            file: self.df.file.clone(),
            line,
            problem,
        }
    }

    fn word(&self, line: usize, text: &str, vars: &dyn Lookup) -> Result<String, DockerfileError> {
        let word = expand_word(text, self.df.escape, vars).map_err(|m| self.error(line, Problem::Substitution(m)))?;
        self.spend(line, word.len())?;
        Ok(word)
    }

    /// Charges `bytes` to the build's substitution budget.
    fn spend(&self, line: usize, bytes: usize) -> Result<(), DockerfileError> {
        let spent = self.spent.get().saturating_add(bytes);
        self.spent.set(spent);
        if spent > MAX_RESOLVED_BYTES {
            return Err(self.error(line, Problem::TooLarge("substituted values over 64 MiB in all")));
        }
        Ok(())
    }

    fn global(&mut self, ins: &Instruction) -> Result<(), DockerfileError> {
        let Command::Arg(decls) = &ins.command else {
            return Err(self.error(ins.line, Problem::BeforeFrom(ins.command.keyword())));
        };
        let before = self.globals.clone();
        for decl in decls {
            self.declared.insert(decl.name.clone());
            let value = match (self.opts.build_args.get(&decl.name), &decl.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => Some(self.word(ins.line, d, &before)?),
                (None, None) => None,
            };
            if let Some(value) = value {
                self.globals.set(&decl.name, value);
            }
        }
        Ok(())
    }

    fn stage(&mut self, from_ins: &Instruction, body: &[Instruction]) -> Result<(), DockerfileError> {
        let Command::From(from) = &from_ins.command else {
            return Ok(());
        };
        let line = from_ins.line;
        let globals = self.globals.clone();
        let image = self.word(line, &from.image, &globals)?;
        let platform = from
            .platform
            .as_ref()
            .map(|p| self.word(line, p, &globals))
            .transpose()?;
        if let Some(name) = &from.name {
            if self.stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                return Err(self.error(line, Problem::DuplicateStage(name.clone())));
            }
        }
        let base = self.base(&image);
        let mut env = Vars::from_list(match &base {
            StageBase::Stage(i) => self.stages[*i].env.clone(),
            StageBase::Image(r) => (self.image_env)(r),
            StageBase::Scratch => Vec::new(),
        });
        self.spend(line, env.bytes())?;
        let depends_on = match base {
            StageBase::Stage(i) => vec![i],
            _ => Vec::new(),
        };
        let index = self.stages.len();
        let mut stage = Stage {
            index,
            name: from.name.clone(),
            line,
            base,
            platform,
            instructions: Vec::new(),
            env: Vec::new(),
            depends_on,
        };
        let mut args = Vars::from_list(
            PREDEFINED_PROXY_ARGS
                .iter()
                .filter_map(|n| self.opts.build_args.get(*n).map(|v| (n.to_string(), v.clone())))
                .collect(),
        );
        for ins in body {
            let expanded = self.instruction(ins, &mut stage, &mut env, &mut args)?;
            stage.instructions.push(expanded);
        }
        stage.env = env.list;
        self.stages.push(stage);
        Ok(())
    }

    fn base(&self, image: &str) -> StageBase {
        let lower = image.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return StageBase::Stage(i);
        }
        if lower == "scratch" {
            return StageBase::Scratch;
        }
        StageBase::Image(image.to_owned())
    }

    fn instruction(
        &mut self,
        ins: &Instruction,
        stage: &mut Stage,
        env: &mut Vars,
        args: &mut Vars,
    ) -> Result<Instruction, DockerfileError> {
        let line = ins.line;
        let scope = Scope { env, args };
        let w = |t: &String| self.word(line, t, &scope);
        let command = match &ins.command {
            Command::Arg(decls) => {
                let resolved = self.stage_args(line, decls, &scope)?;
                for (name, value) in resolved {
                    self.declared.insert(name.clone());
                    if let Some(value) = value {
                        args.set(&name, value);
                    }
                }
                ins.command.clone()
            }
            Command::Env(pairs) => {
                let pairs = pairs
                    .iter()
                    .map(|(k, v)| Ok((w(k)?, w(v)?)))
                    .collect::<Result<Vec<_>, DockerfileError>>()?;
                for (k, v) in &pairs {
                    env.set(k, v.clone());
                }
                Command::Env(pairs)
            }
            Command::Label(pairs) => Command::Label(
                pairs
                    .iter()
                    .map(|(k, v)| Ok((w(k)?, w(v)?)))
                    .collect::<Result<_, DockerfileError>>()?,
            ),
            Command::Expose(ports) => {
                let ports = ports.iter().map(w).collect::<Result<Vec<_>, _>>()?;
                for p in ports.iter().flat_map(|p| p.split_whitespace()) {
                    ExposedPort::parse(p).map_err(|reason| {
                        self.error(
                            line,
                            Problem::Invalid {
                                instruction: "EXPOSE",
                                reason,
                            },
                        )
                    })?;
                }
                Command::Expose(ports)
            }
            Command::Volume(paths) => Command::Volume(paths.iter().map(w).collect::<Result<_, _>>()?),
            Command::User { user, group } => Command::User {
                user: w(user)?,
                group: group.as_ref().map(w).transpose()?,
            },
            Command::Workdir(dir) => Command::Workdir(w(dir)?),
            Command::StopSignal(sig) => Command::StopSignal(w(sig)?),
            Command::Copy(copy) => Command::Copy(self.copy(line, copy, &scope)?),
            Command::Add(add) => Command::Add(self.add(line, add, &scope)?),
            Command::Run(run) => {
                let mut run = run.clone();
                for m in &mut run.mounts {
                    self.mount(line, m, &scope)?;
                }
                self.spend(line, args.bytes())?;
                run.build_args = args.list.clone();
                Command::Run(run)
            }
            other => other.clone(),
        };
        self.record_deps(line, &command, stage)?;
        Ok(Instruction {
            line,
            end_line: ins.end_line,
            command,
        })
    }

    /// In-stage ARG values: build-arg, then the platform value, then the default, then the global.
    fn stage_args(
        &self,
        line: usize,
        decls: &[ArgDecl],
        scope: &Scope,
    ) -> Result<Vec<(String, Option<String>)>, DockerfileError> {
        let platform = self
            .opts
            .build_platform
            .args("BUILD")
            .into_iter()
            .chain(self.opts.target_platform.args("TARGET"))
            .collect::<Vec<_>>();
        decls
            .iter()
            .map(|d| {
                let value = if let Some(v) = self.opts.build_args.get(&d.name) {
                    Some(v.clone())
                } else if let Some(v) = platform.as_slice().lookup(&d.name) {
                    Some(v.to_owned())
                } else if let Some(default) = &d.default {
                    Some(self.word(line, default, scope)?)
                } else {
                    self.globals.lookup(&d.name).map(str::to_owned)
                };
                Ok((d.name.clone(), value))
            })
            .collect()
    }

    fn sources(&self, line: usize, sources: &[Source], scope: &Scope) -> Result<Vec<Source>, DockerfileError> {
        sources
            .iter()
            .map(|s| match s {
                Source::Path(p) => Ok(Source::Path(self.word(line, p, scope)?)),
                Source::Heredoc(h) if h.expand => {
                    let content = expand_raw(&h.content, self.df.escape, scope)
                        .map_err(|m| self.error(line, Problem::Substitution(m)))?;
                    Ok(Source::Heredoc(Heredoc { content, ..h.clone() }))
                }
                Source::Heredoc(h) => Ok(Source::Heredoc(h.clone())),
            })
            .collect()
    }

    fn opt(&self, line: usize, text: &Option<String>, scope: &Scope) -> Result<Option<String>, DockerfileError> {
        text.as_ref().map(|t| self.word(line, t, scope)).transpose()
    }

    fn copy(&self, line: usize, copy: &Copy, scope: &Scope) -> Result<Copy, DockerfileError> {
        Ok(Copy {
            sources: self.sources(line, &copy.sources, scope)?,
            dest: self.word(line, &copy.dest, scope)?,
            from: self.opt(line, &copy.from, scope)?,
            chown: self.opt(line, &copy.chown, scope)?,
            chmod: self.opt(line, &copy.chmod, scope)?,
            ..copy.clone()
        })
    }

    fn add(&self, line: usize, add: &Add, scope: &Scope) -> Result<Add, DockerfileError> {
        Ok(Add {
            sources: self.sources(line, &add.sources, scope)?,
            dest: self.word(line, &add.dest, scope)?,
            chown: self.opt(line, &add.chown, scope)?,
            chmod: self.opt(line, &add.chmod, scope)?,
            checksum: self.opt(line, &add.checksum, scope)?,
            ..add.clone()
        })
    }

    fn mount(&self, line: usize, m: &mut Mount, scope: &Scope) -> Result<(), DockerfileError> {
        for field in [&mut m.target, &mut m.source, &mut m.from, &mut m.id, &mut m.env] {
            *field = self.opt(line, field, scope)?;
        }
        Ok(())
    }

    fn record_deps(&self, line: usize, command: &Command, stage: &mut Stage) -> Result<(), DockerfileError> {
        let refs: Vec<&String> = match command {
            Command::Copy(c) => c.from.iter().collect(),
            Command::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
            _ => Vec::new(),
        };
        for text in refs {
            let found = stage_ref(&self.stages, text, stage.index).map_err(|p| self.error(line, p))?;
            if let Some(i) = found.filter(|i| !stage.depends_on.contains(i)) {
                stage.depends_on.push(i);
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Resolved, DockerfileError> {
        let target = match &self.opts.target {
            None => self.stages.len().saturating_sub(1),
            Some(t) => {
                let lower = t.to_ascii_lowercase();
                self.stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lower.as_str()))
                    .ok_or_else(|| DockerfileError::File {
                        file: self.df.file.clone(),
                        problem: Problem::UnknownTarget(t.clone()),
                    })?
            }
        };
        let unused_build_args = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.declared.contains(k.as_str()) && !PREDEFINED_PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect();
        let mut stages = self.stages;
        stages.truncate(target + 1);
        Ok(Resolved {
            stages,
            target,
            unused_build_args,
        })
    }
}

/// An earlier stage named by `text` (a name or an index), seen from stage `current`.
fn stage_ref(stages: &[Stage], text: &str, current: usize) -> Result<Option<usize>, Problem> {
    if let Ok(n) = text.parse::<usize>() {
        return if n < current {
            Ok(Some(n))
        } else {
            Err(Problem::StageCycle(text.to_owned()))
        };
    }
    let lower = text.to_ascii_lowercase();
    Ok(stages
        .iter()
        .take(current)
        .position(|s| s.name.as_deref() == Some(lower.as_str())))
}
