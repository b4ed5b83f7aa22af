//! File operations on the container (`cp`, `diff`, `commit`, `export`), each run on
//! its own thread. Operations on container paths first confine their thread to the
//! container root (`unshare(CLONE_FS)` + `chroot`), so an absolute symlink or `..`
//! planted by the workload resolves inside the container, never into the agent's
//! initramfs or another mount.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use guest_agent::archive::{self, Placement, UnpackOptions};
use guest_agent::protocol::CopyOp;

use super::root::{LOWER, ROOT, RW};
use super::sys;

/// Runs `op` with the host's input (a tar stream) and output; the error is one line
/// for the user.
pub fn run(op: &CopyOp, input: Option<File>, output: File) -> Result<(), String> {
    let mut out = BufWriter::with_capacity(256 * 1024, output);
    match op {
        CopyOp::Read { path, contents } => {
            enter_root()?;
            let path = absolute(path)?;
            let is_dir = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let name = match path.file_name() {
                Some(n) if !*contents => n.to_string_lossy().into_owned(),
                _ if is_dir.is_dir() => String::new(),
                _ => return Err(format!("{}: not a directory", path.display())),
            };
            archive::pack_path(&mut out, path, &name).map_err(|e| e.to_string())?;
        }
        CopyOp::Write {
            path,
            contents,
            archive: is_archive,
            owners,
        } => {
            enter_root()?;
            let dest = absolute(path)?;
            let input = input.ok_or("no input stream")?;
            let options = UnpackOptions::guest(*owners);
            let place = |first_is_dir| match is_archive {
                true if dest.is_dir() => Placement::into(dest),
                true => Err(archive::ArchiveError::Placement(format!(
                    "{} is not a directory",
                    dest.display()
                ))),
                false => archive::place(dest, first_is_dir, *contents),
            };
            archive::unpack(std::io::BufReader::new(input), options, place).map_err(|e| e.to_string())?;
        }
        CopyOp::Diff => {
            let upper = Path::new(RW).join("upper");
            let changes = archive::changes(&overlay(&upper)).map_err(|e| e.to_string())?;
            for c in changes {
                writeln!(out, "{} {}", c.kind, c.path).map_err(|e| e.to_string())?;
            }
        }
        CopyOp::Layer => {
            let upper = Path::new(RW).join("upper");
            archive::pack_layer(&mut out, &overlay(&upper)).map_err(|e| e.to_string())?;
        }
        CopyOp::Export => {
            enter_root()?;
            archive::pack_path(&mut out, Path::new("/"), "").map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| format!("sending to the host: {e}"))
}

/// The container's overlay, with `upper` its upper directory.
fn overlay(upper: &Path) -> archive::Overlay<'_> {
    archive::Overlay {
        upper,
        lower: Path::new(LOWER),
        merged: Path::new(ROOT),
        xattrs: archive::Overlay::TRUSTED,
    }
}

fn enter_root() -> Result<(), String> {
    sys::enter_root(Path::new(ROOT)).map_err(|e| format!("entering the container root: {e}"))
}

fn absolute(path: &str) -> Result<&Path, String> {
    match path.starts_with('/') {
        true => Ok(Path::new(path)),
        false => Err(format!("{path}: not an absolute path")),
    }
}
