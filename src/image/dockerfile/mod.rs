//! The front half of `hull build`: Dockerfile parsing, variable substitution with
//! Docker's ARG/ENV scoping, stage resolution, and `.dockerignore` matching.
//!
//! Written here rather than taken from crates.io: `dockerfile-parser` (last release
//! 2021) has no heredocs, `dockerfile-parser-rs` lacks HEALTHCHECK/ONBUILD and
//! quoted or multiple heredocs, and `parse-dockerfile` parses only; none performs
//! Docker's variable substitution or ARG/ENV scoping.
//!
//! [`parse`] turns text into [`Dockerfile`] (instructions with their line numbers,
//! arguments as written); [`resolve`] expands them for one build (build-args, target
//! stage, platform) into [`Stage`]s; [`DockerIgnore`] filters the build context.
//! All input is untrusted: sizes and depths are bounded by the `MAX_*` constants and
//! no input panics.

mod error;
mod expand;
mod ignore;
mod instruction;
mod parse;
mod stages;
mod words;

pub use error::{DockerfileError, Problem};
pub use expand::{expand_word, Lookup};
pub use ignore::{always_sent, DockerIgnore, IgnoreError, IgnorePattern};
pub use instruction::{
    Add, ArgDecl, Command, CommandLine, Copy, ExposedPort, From, Healthcheck, HealthcheckOptions, Heredoc, Instruction,
    Mount, MountType, Network, PortProtocol, Run, Security, Sharing, Source,
};
pub use parse::{parse, Dockerfile};
pub use stages::{resolve, BuildOptions, FromRef, Platform, Resolved, Stage, StageBase, PREDEFINED_PROXY_ARGS};

/// Largest Dockerfile accepted, heredocs included.
pub const MAX_DOCKERFILE_BYTES: usize = 4 << 20;
/// Longest logical line (an instruction with its continuations joined).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Most instructions in one Dockerfile.
pub const MAX_INSTRUCTIONS: usize = 10_000;
/// Deepest nesting of `${...}` inside substitution words.
pub const MAX_EXPANSION_DEPTH: usize = 32;
/// Longest result of expanding one word (variables may double a value per ENV).
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;
/// Most bytes one `resolve` may produce by substitution and by copying variables
/// into stages and RUN environments, all together.
pub const MAX_RESOLVED_BYTES: usize = 64 << 20;
/// Longest `.dockerignore` pattern (matching costs pattern x path).
pub const MAX_PATTERN_CHARS: usize = 4096;
/// Largest `.dockerignore` accepted.
pub const MAX_DOCKERIGNORE_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests;
