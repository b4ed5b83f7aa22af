//! What a VM boots from besides the image: the VMM binary, the guest kernel, and the
//! initramfs whose `/init` is the agent. The agent always comes from hull's own
//! install, never from the image.
//!
//! Lookup order for each: an environment variable (`HULL_VMM`, `HULL_KERNEL`,
//! `HULL_AGENT`), then the directory of the `hull` executable (`vmm`, `vmlinux`,
//! `hull-agent`), then the build tree (`target/x86_64-unknown-linux-musl/<profile>/`
//! beside `target/<profile>/`) and the kernel build cache. The VMM is built static for
//! musl (it starts faster: no dynamic loading); where both builds exist, the newer wins.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::image::store::fs::{create_temp, publish};

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{what} not found (looked in: {looked}); {hint}")]
    Missing {
        what: &'static str,
        looked: String,
        hint: &'static str,
    },
    #[error("building the initramfs {path}")]
    Initramfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The files one boot needs.
#[derive(Debug, Clone)]
pub struct Assets {
    pub vmm: PathBuf,
    pub kernel: PathBuf,
    pub agent: PathBuf,
}

fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(Path::to_owned)
}

fn first_file(
    what: &'static str,
    var: &str,
    candidates: Vec<PathBuf>,
    hint: &'static str,
) -> Result<PathBuf, AssetError> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(AssetError::Missing {
            what,
            looked: format!("{var}={}", p.display()),
            hint,
        });
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| AssetError::Missing {
            what,
            looked: std::iter::once(format!("${var}"))
                .chain(candidates.iter().map(|p| p.display().to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            hint,
        })
}

/// Where the build tree keeps what `hull` runs beside it: the directory of the
/// executable, its profile name, and the musl target directory next to it.
fn build_dirs() -> (PathBuf, std::ffi::OsString, PathBuf) {
    let dir = exe_dir().unwrap_or_default();
    let profile = dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let target = dir.parent().map(Path::to_owned).unwrap_or_default();
    let musl = target.join("x86_64-unknown-linux-musl");
    (dir, profile, musl)
}

impl Assets {
    pub fn locate() -> Result<Assets, AssetError> {
        Ok(Assets {
            vmm: Assets::vmm()?,
            agent: Assets::agent()?,
            kernel: Assets::kernel()?,
        })
    }

    /// The VMM binary alone (`hull version` and `hull info` report each asset).
    pub fn vmm() -> Result<PathBuf, AssetError> {
        let (dir, profile, musl) = build_dirs();
        first_file(
            "the vmm binary",
            "HULL_VMM",
            newest_first(vec![dir.join("vmm"), musl.join(&profile).join("vmm")]),
            "build it with `cargo build --release -p vmm --target x86_64-unknown-linux-musl` (scripts/setup.sh does)",
        )
    }

    /// The guest agent alone.
    pub fn agent() -> Result<PathBuf, AssetError> {
        let (dir, profile, musl) = build_dirs();
        first_file(
            "the guest agent",
            "HULL_AGENT",
            vec![
                dir.join("hull-agent"),
                musl.join(&profile).join("hull-agent"),
                musl.join("release").join("hull-agent"),
            ],
            "build it with `cargo build --release -p guest-agent --target x86_64-unknown-linux-musl` (scripts/setup.sh does)",
        )
    }

    /// The guest kernel alone.
    pub fn kernel() -> Result<PathBuf, AssetError> {
        let (dir, _, _) = build_dirs();
        first_file(
            "the guest kernel",
            "HULL_KERNEL",
            kernel_candidates(&dir),
            "build it with kernel-config/build.sh (scripts/setup.sh does)",
        )
    }
}

/// The release of a guest kernel image (`6.1.127`), read from the banner every
/// kernel carries (`Linux version 6.1.127 (user@host) ...`); `None` when the file
/// has none.
pub fn kernel_version(kernel: &Path) -> io::Result<Option<String>> {
    const BANNER: &[u8] = b"Linux version ";
    let bytes = fs::read(kernel)?;
    let mut rest = &bytes[..];
    while let Some(at) = rest.windows(BANNER.len()).position(|w| w == BANNER) {
        rest = &rest[at + BANNER.len()..];
        // The banner itself, not the `%s version %s` format of /proc/version.
        if rest.first().is_some_and(u8::is_ascii_digit) {
            let release: Vec<u8> = rest
                .iter()
                .copied()
                .take(64)
                .take_while(|b| b.is_ascii_graphic())
                .collect();
            return Ok(Some(String::from_utf8_lossy(&release).into_owned()));
        }
    }
    Ok(None)
}

/// `paths` with the existing files first, most recently modified first, then the rest
/// (still named in a "not found" message). Of a VMM built both static (musl, which
/// starts faster: no dynamic loading) and dynamic, the one built last wins, so a stale
/// build is never picked over a fresh one.
fn newest_first(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mtime = |p: &PathBuf| fs::metadata(p).ok().filter(|m| m.is_file())?.modified().ok();
    let mut paths: Vec<_> = paths.into_iter().map(|p| (mtime(&p), p)).collect();
    // None sorts before Some: reversed, missing files come last.
    paths.sort_by_key(|(mtime, _)| std::cmp::Reverse(*mtime));
    paths.into_iter().map(|(_, p)| p).collect()
}

fn kernel_candidates(exe_dir: &Path) -> Vec<PathBuf> {
    let mut c = vec![exe_dir.join("vmlinux")];
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    if let Some(cache) = cache {
        let built = fs::read_dir(cache.join("hull/kernel"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("vmlinux"))
            .filter(|p| p.is_file())
            .collect();
        c.extend(newest_first(built));
    }
    c
}

/// The initramfs for `agent`, built once per agent binary under `dir`.
pub fn initramfs(dir: &Path, agent: &Path) -> Result<PathBuf, AssetError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| AssetError::Initramfs { path, source }
    };
    let binary = fs::read(agent).map_err(err(agent))?;
    let key = hex::encode(&Sha256::digest(&binary)[..8]);
    let path = dir.join(format!("agent-{key}.cpio"));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(dir).map_err(err(dir))?;
    let (mut file, tmp) = create_temp(dir).map_err(err(dir))?;
    let result = write_initramfs(&mut file, &binary)
        .and_then(|()| file.sync_all())
        .and_then(|()| publish(&tmp, &path));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err(&path)(e));
    }
    Ok(path)
}

/// A newc cpio archive: the directories the agent mounts on, `/dev/console` (so
/// PID 1 starts with the console as stdio) and `/init`.
pub fn write_initramfs(out: &mut impl Write, agent: &[u8]) -> io::Result<()> {
    let mut ino = 1;
    let mut entry = |out: &mut dyn Write, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]| {
        ino += 1;
        write_cpio_entry(out, ino, name, mode, rdev, data)
    };
    for dir in ["dev", "proc", "sys", "mnt", "mnt/lower", "mnt/rw", "mnt/root", "tmp"] {
        entry(out, dir, 0o040755, (0, 0), &[])?;
    }
    entry(out, "dev/console", 0o020600, (5, 1), &[])?;
    entry(out, "init", 0o100755, (0, 0), agent)?;
    write_cpio_entry(out, 0, "TRAILER!!!", 0, (0, 0), &[])
}

fn write_cpio_entry(
    out: &mut dyn Write,
    ino: u32,
    name: &str,
    mode: u32,
    rdev: (u32, u32),
    data: &[u8],
) -> io::Result<()> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0,
        0,
        1,
        0,
        data.len(),
        0,
        0,
        rdev.0,
        rdev.1,
        0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    out.write_all(&vec![0u8; pad4(110 + namesize)])?;
    out.write_all(data)?;
    out.write_all(&vec![0u8; pad4(data.len())])
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Whether `/dev/kvm` can be opened for reading and writing; the one privilege hull
/// needs, checked before anything is created.
pub fn check_kvm() -> Result<(), String> {
    check_kvm_at(Path::new("/dev/kvm"))
}

fn check_kvm_at(dev: &Path) -> Result<(), String> {
    let dev_name = dev.display();
    match File::options().read(true).write(true).open(dev) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "{dev_name} does not exist: this host has no KVM (enable virtualization, load kvm_intel or kvm_amd)"
        )),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(format!(
            "cannot open {dev_name}: permission denied (add your user to the kvm group, or grant rw access to {dev_name})"
        )),
        Err(e) => Err(format!("cannot open {dev_name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_missing_or_closed_kvm_device_is_one_clear_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_kvm_at(&dir.path().join("kvm")).unwrap_err();
        assert!(err.contains("does not exist: this host has no KVM"), "{err}");
        assert_eq!(err.lines().count(), 1);
        // Permission is only denied to a user without rights (root opens anything).
        let closed = dir.path().join("closed");
        fs::write(&closed, b"").unwrap();
        fs::set_permissions(&closed, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let err = check_kvm_at(&closed).unwrap_err();
            assert!(
                err.contains("permission denied (add your user to the kvm group"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_kernel_version_comes_from_the_banner() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("vmlinux");
        let mut image = b"\x7fELF\0\0%s version %s (".to_vec();
        image.extend(vec![0u8; 5000]);
        image.extend(b"Linux version 6.1.127-hull (builder@host) (gcc 12) #1\n\0more");
        fs::write(&kernel, &image).unwrap();
        assert_eq!(kernel_version(&kernel).unwrap().as_deref(), Some("6.1.127-hull"));
        fs::write(&kernel, b"no banner here, Linux version x").unwrap();
        assert_eq!(kernel_version(&kernel).unwrap(), None);
        assert!(kernel_version(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn newest_first_puts_the_last_built_file_first_and_missing_ones_last() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, missing) = (
            dir.path().join("old"),
            dir.path().join("new"),
            dir.path().join("missing"),
        );
        fs::write(&old, b"").unwrap();
        fs::write(&new, b"").unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();
        let order = newest_first(vec![missing.clone(), old.clone(), new.clone()]);
        assert_eq!(order, vec![new.clone(), old.clone(), missing.clone()]);
        // The first existing one is what the lookup takes.
        let found = first_file("x", "HULL_TEST_UNSET_VARIABLE", order, "").unwrap();
        assert_eq!(found, new);
    }

    #[test]
    fn initramfs_is_a_cpio_archive_cpio_can_list() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        fs::write(&agent, b"\x7fELF pretend agent").unwrap();
        let path = initramfs(&dir.path().join("cache"), &agent).unwrap();
        assert_eq!(initramfs(&dir.path().join("cache"), &agent).unwrap(), path);
        let Ok(out) = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&path)
            .output()
        else {
            panic!("cpio not found: install the Debian package cpio");
        };
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            listing.contains("crw-------") && listing.contains("dev/console"),
            "{listing}"
        );
        assert!(listing.contains("-rwxr-xr-x") && listing.contains(" init"), "{listing}");
        assert!(listing.contains("mnt/root"), "{listing}");
    }
}
