//! `hull cp`: copies files between a container and the host, both ways, as
//! `docker cp` does:
//!
//!   hull cp [-a] CONTAINER:SRC DEST|-      hull cp [-a] SRC|- CONTAINER:DEST
//!
//! Container paths resolve inside the container root only (the agent confines its
//! thread there); what comes back from the guest is unpacked with every name
//! confined to the destination, never through a symlink. A stopped container is
//! reached through a helper VM on its own disks, never by mounting them here.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use guest_agent::archive::{self, UnpackOptions};
use guest_agent::protocol::CopyOp;

use super::{files, lifecycle};

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol links in SRC_PATH (accepted for compatibility; only
    /// the host side is followed)
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output (there is none)
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on STDIN)
    source: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream to STDOUT)
    destination: String,
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    Stream,
    Host(PathBuf),
    Container { name: String, path: String },
}

/// `docker cp`'s rule: a path starting with `/` or `.` is local; else
/// `NAME:PATH` names a container path (relative paths are from the root).
fn side(arg: &str) -> Side {
    if arg == "-" {
        return Side::Stream;
    }
    if arg.starts_with(['/', '.']) {
        return Side::Host(arg.into());
    }
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() => {
            let path = if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            };
            Side::Container {
                name: name.to_owned(),
                path,
            }
        }
        _ => Side::Host(arg.into()),
    }
}

/// `SRC/.`: copy the directory's contents, not the directory.
fn contents_only(path: &str) -> bool {
    path.ends_with("/.") || path == "."
}

pub fn run(args: CpArgs) -> anyhow::Result<()> {
    match (side(&args.source), side(&args.destination)) {
        (Side::Container { name, path }, dest @ (Side::Host(_) | Side::Stream)) => from_container(&name, &path, dest),
        (src @ (Side::Host(_) | Side::Stream), Side::Container { name, path }) => {
            to_container(src, &name, &path, args.archive, args.follow_link)
        }
        (Side::Container { .. }, Side::Container { .. }) => {
            bail!("copying between containers is not supported")
        }
        _ => bail!("must specify at least one container source"),
    }
}

fn from_container(name: &str, path: &str, dest: Side) -> anyhow::Result<()> {
    let c = lifecycle::containers()?.find(name)?;
    let contents = contents_only(path);
    let op = CopyOp::Read {
        path: path.to_owned(),
        contents,
    };
    match dest {
        Side::Stream => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to write a tar stream to a terminal; redirect it");
            }
            let mut out = io::BufWriter::with_capacity(256 * 1024, io::stdout().lock());
            files::read_from(&c, op, |tar| Ok(io::copy(tar, &mut out).map(drop)?))?;
            Ok(out.flush()?)
        }
        Side::Host(dest) => {
            let options = UnpackOptions {
                max_bytes: files::stream_limit(&c),
                below: source_name(path, contents),
                ..UnpackOptions::host()
            };
            let done = files::read_from(&c, op, |tar| {
                let place = |is_dir| archive::place(&dest, is_dir, contents);
                Ok(archive::unpack(io::BufReader::new(tar), options, place)?)
            })?;
            report_skipped(&done);
            Ok(())
        }
        Side::Container { .. } => unreachable!("checked by the caller"),
    }
}

/// The name every entry of a copy of container path `path` must start with: its
/// last component, as the agent names the stream (none for `SRC/.` or `/`).
fn source_name(path: &str, contents: bool) -> Option<std::ffi::OsString> {
    match contents {
        true => None,
        false => Path::new(path).file_name().map(|n| n.to_owned()),
    }
}

fn report_skipped(done: &archive::Unpacked) {
    for name in &done.skipped_names {
        eprintln!("hull: skipped {name}: device nodes and fifos are not created on the host");
    }
    let unnamed = done.skipped - done.skipped_names.len() as u64;
    if unnamed > 0 {
        eprintln!("hull: skipped {unnamed} more device nodes and fifos");
    }
}

fn to_container(src: Side, name: &str, path: &str, owners: bool, follow: bool) -> anyhow::Result<()> {
    let c = lifecycle::containers()?.find(name)?;
    match src {
        Side::Stream => {
            let op = CopyOp::Write {
                path: path.to_owned(),
                contents: false,
                archive: true,
                owners,
            };
            files::write_to(&c, op, |conn| {
                io::copy(&mut io::stdin().lock(), conn).context("sending the tar stream")?;
                Ok(())
            })
        }
        Side::Host(src) => {
            let shown = src.display().to_string();
            let contents = contents_only(&shown);
            let src = match follow {
                true => src.canonicalize().with_context(|| shown.clone())?,
                false => src,
            };
            let meta = std::fs::symlink_metadata(&src).with_context(|| format!("could not stat {shown}"))?;
            if contents && !meta.is_dir() {
                bail!("{shown}: not a directory");
            }
            let name = match contents {
                true => String::new(),
                false => base_name(&src)?,
            };
            let op = CopyOp::Write {
                path: path.to_owned(),
                contents,
                archive: false,
                owners,
            };
            files::write_to(&c, op, move |conn| {
                let out = io::BufWriter::with_capacity(256 * 1024, conn);
                archive::pack_path(out, &src, &name)?.flush()?;
                Ok(())
            })
        }
        Side::Container { .. } => unreachable!("checked by the caller"),
    }
}

/// The name a copied path gets: its last component (`.` and `..` resolved).
fn base_name(path: &Path) -> anyhow::Result<String> {
    let name = match path.file_name() {
        Some(n) => n.to_owned(),
        None => std::fs::canonicalize(path)?
            .file_name()
            .map(|n| n.to_owned())
            .ok_or_else(|| anyhow::anyhow!("cannot copy {}", path.display()))?,
    };
    Ok(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_like_docker_cp() {
        let c = |name: &str, path: &str| Side::Container {
            name: name.into(),
            path: path.into(),
        };
        assert_eq!(side("web:/etc/hosts"), c("web", "/etc/hosts"));
        assert_eq!(side("web:etc"), c("web", "/etc"));
        assert_eq!(side("-"), Side::Stream);
        assert_eq!(side("./a:b"), Side::Host("./a:b".into()));
        assert_eq!(side("/tmp/a:b"), Side::Host("/tmp/a:b".into()));
        assert_eq!(side("plain"), Side::Host("plain".into()));
        assert_eq!(side(":x"), Side::Host(":x".into()));
        assert!(contents_only("/dir/."));
        assert!(!contents_only("/dir/"));
    }

    #[test]
    fn a_copy_out_names_the_source_as_the_agent_does() {
        assert_eq!(source_name("/etc/hosts", false), Some("hosts".into()));
        assert_eq!(source_name("/srv/app/", false), Some("app".into()));
        assert_eq!(source_name("/srv/app/.", true), None);
        assert_eq!(source_name("/", false), None);
        assert_eq!(source_name("/etc/..", false), None);
    }
}
