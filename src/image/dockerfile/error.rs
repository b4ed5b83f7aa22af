//! Errors: every one names the file and, where there is one, the line.

/// A Dockerfile that cannot be parsed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    #[error("{file}:{line}: {problem}")]
    Line {
        file: String,
        line: usize,
        problem: Problem,
    },
    #[error("{file}: {problem}")]
    File { file: String, problem: Problem },
}

impl DockerfileError {
    /// The line the error is on, if it is on one.
    pub fn line(&self) -> Option<usize> {
        match self {
            DockerfileError::Line { line, .. } => Some(*line),
            DockerfileError::File { .. } => None,
        }
    }

    /// What went wrong, without the location.
    pub fn problem(&self) -> &Problem {
        match self {
            DockerfileError::Line { problem, .. } | DockerfileError::File { problem, .. } => problem,
        }
    }
}

/// What is wrong, without where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("{instruction} requires {expected}")]
    Arguments {
        instruction: &'static str,
        expected: &'static str,
    },
    #[error("{instruction}: {reason}")]
    Invalid { instruction: &'static str, reason: String },
    #[error("unknown flag: --{flag} (on {instruction})")]
    UnknownFlag { instruction: &'static str, flag: String },
    #[error("bad flag --{flag}: {reason}")]
    BadFlag { flag: String, reason: String },
    #[error("unterminated heredoc {name} (no line {name} before the end of the file)")]
    UnterminatedHeredoc { name: String },
    #[error("parser directive {0} given twice")]
    DuplicateDirective(String),
    #[error("invalid escape directive {0:?}: must be ` or \\")]
    BadEscape(String),
    #[error("variable substitution: {0}")]
    Substitution(String),
    #[error("no FROM instruction: a Dockerfile needs at least one build stage")]
    NoFrom,
    #[error("{0} is not allowed before the first FROM (only ARG is)")]
    BeforeFrom(&'static str),
    #[error("target stage {0:?} could not be found")]
    UnknownTarget(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error("invalid stage name {0:?}: must start with a letter and hold only letters, digits, '-', '_' and '.'")]
    BadStageName(String),
    #[error("stage {0:?} refers to itself or a later stage")]
    StageCycle(String),
    #[error("input too large: {0}")]
    TooLarge(&'static str),
}
