//! The instructions of a Dockerfile as typed values.
//!
//! After [`parse`](super::parse) string fields hold the text as written (quotes and
//! `$VARS` intact); after [`resolve`](super::resolve) the fields Docker substitutes in
//! are expanded and unquoted. RUN/CMD/ENTRYPOINT/SHELL are never expanded here: the
//! shell in the container does that.

use std::time::Duration;

/// One instruction and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// First line (1-based) of the instruction.
    pub line: usize,
    /// Last line, continuations and heredoc bodies included.
    pub end_line: usize,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Copy(Copy),
    Add(Add),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User {
        user: String,
        group: Option<String>,
    },
    Workdir(String),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger, kept unexpanded: it is expanded when it fires in a later build.
    Onbuild(Box<Instruction>),
    /// Deprecated; accepted and kept (it sets the image's author).
    Maintainer(String),
}

impl Command {
    /// The instruction's keyword, as Docker spells it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Run(_) => "RUN",
            Command::Cmd(_) => "CMD",
            Command::Entrypoint(_) => "ENTRYPOINT",
            Command::Shell(_) => "SHELL",
            Command::Copy(_) => "COPY",
            Command::Add(_) => "ADD",
            Command::Env(_) => "ENV",
            Command::Label(_) => "LABEL",
            Command::Arg(_) => "ARG",
            Command::Expose(_) => "EXPOSE",
            Command::Volume(_) => "VOLUME",
            Command::User { .. } => "USER",
            Command::Workdir(_) => "WORKDIR",
            Command::StopSignal(_) => "STOPSIGNAL",
            Command::Healthcheck(_) => "HEALTHCHECK",
            Command::Onbuild(_) => "ONBUILD",
            Command::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    /// Lowercased, as stage names are case-insensitive.
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// Exec form (`["a", "b"]`, run without a shell) or shell form (run by SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Exec(Vec<String>),
    Shell(String),
}

/// A here-document: `<<EOF`, `<<-EOF` (leading tabs stripped), `<<'EOF'` (no expansion).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    /// The body, each line ending in `\n`, tabs already stripped for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted.
    pub expand: bool,
    /// True for `<<-`.
    pub strip_tabs: bool,
    /// The file descriptor in `3<<EOF`.
    pub fd: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    /// Heredocs of the shell form, in order; a RUN that is only `<<EOF` runs the body.
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<Network>,
    pub security: Option<Security>,
    /// ARGs in scope, filled by [`resolve`](super::resolve): RUN sees them as
    /// environment variables (ENV of the same name wins).
    pub build_args: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// `RUN --mount=type=...,k=v,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub target: Option<String>,
    pub source: Option<String>,
    /// `from=`: a stage name or index, or an image.
    pub from: Option<String>,
    pub readonly: bool,
    /// Cache id, or secret/ssh id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    /// Secret exposed as this environment variable.
    pub env: Option<String>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
}

/// What COPY and ADD copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(String),
    /// `COPY <<EOF /dest`: an inline file.
    Heredoc(Heredoc),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from=`: a stage name or index, or an image reference.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// Written in JSON form.
    pub exec_form: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub checksum: Option<String>,
    pub link: bool,
    pub exec_form: bool,
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Check {
        command: CommandLine,
        options: HealthcheckOptions,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthcheckOptions {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    Tcp,
    Udp,
    Sctp,
}

/// One EXPOSE argument: `80`, `53/udp`, `8000-8010/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExposedPort {
    pub first: u16,
    pub last: u16,
    pub protocol: PortProtocol,
}

impl ExposedPort {
    /// Parses an (expanded) EXPOSE argument.
    pub fn parse(text: &str) -> Result<ExposedPort, String> {
        let (ports, proto) = match text.split_once('/') {
            Some((p, proto)) => (p, proto),
            None => (text, "tcp"),
        };
        let protocol = match proto.to_ascii_lowercase().as_str() {
            "tcp" => PortProtocol::Tcp,
            "udp" => PortProtocol::Udp,
            "sctp" => PortProtocol::Sctp,
            _ => return Err(format!("invalid protocol {proto:?} in {text:?}")),
        };
        let (first, last) = ports.split_once('-').unwrap_or((ports, ports));
        let number = |s: &str| s.parse::<u16>().map_err(|_| format!("invalid port {text:?}"));
        let (first, last) = (number(first)?, number(last)?);
        if first == 0 || last < first {
            return Err(format!("invalid port range {text:?}"));
        }
        Ok(ExposedPort { first, last, protocol })
    }
}
